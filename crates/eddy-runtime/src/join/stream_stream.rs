//! Stream-stream join: each side buffers its records for the join window plus the grace period, and
//! a record joins the other side's buffered records of its key within `WITHIN` of it; the joined row
//! takes the later time. Kafka Streams' rules (`KStreamKStreamJoin`), which ksqlDB's results follow:
//! - a buffer shows only records newer than its own latest time minus its retention (window + grace);
//! - without `GRACE PERIOD`, an unmatched record of a side the join keeps is emitted at once with
//!   NULLs (grace 24 hours); with it, it waits in the outer buffer until its window has closed
//!   (its time + the window's reach on its side + grace < stream time) and is dropped if a match
//!   comes first; a record whose window already closed when it arrives is emitted at once;
//! - stream time is the latest record time of either side.

use std::collections::BTreeMap;

use datafusion::arrow::row::OwnedRow;
use hashbrown::HashMap;

use eddy_common::Result;
use eddy_sql::join::JoinType;
use eddy_sql::statement::JoinWithin;
use eddy_sql::window::DEFAULT_GRACE_MS;

use super::{JoinOperator, JoinOutput, Joined, Side, SideRow};

/// A buffered record: its time and arrival number, and its row.
type Buffered = ((i64, u64), OwnedRow);

/// One side's buffered records.
#[derive(Debug, Default)]
struct Buffer {
    /// The latest time put in.
    observed: Option<i64>,
    /// Each key's records in (time, arrival) order: most keys have few, so a sorted vector.
    by_key: HashMap<OwnedRow, Vec<Buffered>>,
    /// Every record by time, to purge the expired.
    by_time: BTreeMap<(i64, u64), OwnedRow>,
}

impl Buffer {
    /// The oldest time still visible.
    fn horizon(&self, retention: i64) -> i64 {
        self.observed
            .map_or(i64::MIN, |t| t.saturating_sub(retention).saturating_add(1))
    }

    /// Buffers a record; false if it is already older than what the buffer shows.
    fn put(&mut self, key: OwnedRow, time: i64, seq: u64, row: OwnedRow, retention: i64) -> bool {
        self.observed = Some(self.observed.map_or(time, |t| t.max(time)));
        let horizon = self.horizon(retention);
        // Forget what can no longer be seen.
        while let Some(entry) = self.by_time.first_entry() {
            if entry.key().0 >= horizon {
                break;
            }
            let (at, k) = entry.remove_entry();
            if let Some(rows) = self.by_key.get_mut(&k) {
                if let Ok(i) = rows.binary_search_by_key(&at, |(a, _)| *a) {
                    rows.remove(i);
                }
                if rows.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
        if time < horizon {
            return false;
        }
        self.by_time.insert((time, seq), key.clone());
        let rows = self.by_key.entry(key).or_default();
        let at = rows.partition_point(|(a, _)| *a < (time, seq));
        rows.insert(at, ((time, seq), row));
        true
    }

    /// A key's records with times in `from..=to`, oldest first.
    fn range(&self, key: &OwnedRow, from: i64, to: i64) -> &[Buffered] {
        let Some(rows) = self.by_key.get(key) else {
            return &[];
        };
        let start = rows.partition_point(|((t, _), _)| *t < from);
        let end = rows.partition_point(|((t, _), _)| *t <= to);
        &rows[start..end.max(start)]
    }
}

/// An unmatched record waiting for its window to close: by time, side (right first), key.
type OuterKey = (i64, u8, OwnedRow, u64);

#[derive(Debug)]
pub struct StreamStreamJoin {
    join_type: JoinType,
    before: i64,
    after: i64,
    grace: i64,
    /// Buffer records as long as they may join: the window and the grace period.
    retention: i64,
    /// Whether unmatched records wait for their window to close (`GRACE PERIOD` given).
    wait_for_close: bool,
    buffers: [Buffer; 2],
    outer: BTreeMap<OuterKey, OwnedRow>,
    stream_time: i64,
    /// The oldest time in the outer buffer, as Kafka Streams tracks it.
    min_time: i64,
    seq: u64,
}

impl StreamStreamJoin {
    pub fn new(join_type: JoinType, within: JoinWithin) -> Self {
        let grace = within.grace_ms.unwrap_or(DEFAULT_GRACE_MS);
        StreamStreamJoin {
            join_type,
            before: within.before_ms,
            after: within.after_ms,
            grace,
            retention: within
                .before_ms
                .saturating_add(within.after_ms)
                .saturating_add(grace),
            wait_for_close: within.grace_ms.is_some(),
            buffers: [Buffer::default(), Buffer::default()],
            outer: BTreeMap::new(),
            stream_time: i64::MIN,
            min_time: i64::MAX,
            seq: 0,
        }
    }

    fn keeps(&self, side: Side) -> bool {
        match side {
            Side::Left => self.join_type.keeps_left(),
            Side::Right => self.join_type.keeps_right(),
        }
    }

    /// How far after a record of `side` the other side's records join it.
    fn reach_after(&self, side: Side) -> i64 {
        match side {
            Side::Left => self.after,
            Side::Right => self.before,
        }
    }

    fn reach_before(&self, side: Side) -> i64 {
        match side {
            Side::Left => self.before,
            Side::Right => self.after,
        }
    }

    /// Emits the waiting unmatched records whose window has closed, oldest first.
    fn emit_closed(&mut self, side: Side, at: usize, out: &mut JoinOutput) {
        let closes = |t: i64, reach: i64, grace: i64| t.saturating_add(reach).saturating_add(grace);
        if closes(self.min_time, self.reach_after(side), self.grace) >= self.stream_time {
            return;
        }
        let mut open = [false; 2];
        let mut done = Vec::new();
        for (k, _) in self.outer.iter() {
            let (time, side_byte, _, _) = k;
            self.min_time = *time;
            let waiting = if *side_byte == 1 {
                Side::Left
            } else {
                Side::Right
            };
            if closes(*time, self.reach_after(waiting), self.grace) >= self.stream_time {
                open[waiting.index()] = true;
                if open == [true, true] {
                    break;
                }
                continue;
            }
            done.push(k.clone());
        }
        for k in done {
            let Some(row) = self.outer.remove(&k) else {
                continue;
            };
            let (time, side_byte, key, _) = k;
            let (left, right) = if side_byte == 1 {
                (Some(row), None)
            } else {
                (None, Some(row))
            };
            out.rows.push(Joined {
                key,
                left,
                right,
                time,
                tombstone: false,
                at,
            });
        }
    }
}

fn side_byte(side: Side) -> u8 {
    match side {
        Side::Left => 1,
        Side::Right => 0,
    }
}

impl JoinOperator for StreamStreamJoin {
    fn process(&mut self, side: Side, rows: Vec<SideRow>) -> Result<JoinOutput> {
        let mut out = JoinOutput::default();
        for r in rows {
            // A record without a value joins nothing.
            let Some(row) = r.row else { continue };
            let time = r.time;
            let from = time.saturating_sub(self.reach_before(side)).max(0);
            let to = time.saturating_add(self.reach_after(side)).max(0);
            self.stream_time = self.stream_time.max(time);
            self.seq += 1;
            if !self.buffers[side.index()].put(
                r.key.clone(),
                time,
                self.seq,
                row.clone(),
                self.retention,
            ) {
                out.late_records += 1;
            }
            if self.wait_for_close && time == self.stream_time {
                self.emit_closed(side, r.at, &mut out);
            }
            let other = &self.buffers[side.other().index()];
            let from = from.max(other.horizon(self.retention));
            let mut matched = false;
            if from <= to {
                for ((other_time, _), other_row) in other.range(&r.key, from, to) {
                    matched = true;
                    if self.wait_for_close {
                        // The other record has its match: it no longer waits as an unmatched one.
                        let lo = (*other_time, side_byte(side.other()), r.key.clone(), 0);
                        let hi = (
                            *other_time,
                            side_byte(side.other()),
                            r.key.clone(),
                            u64::MAX,
                        );
                        let waiting: Vec<OuterKey> =
                            self.outer.range(lo..=hi).map(|(k, _)| k.clone()).collect();
                        for k in waiting {
                            self.outer.remove(&k);
                        }
                    }
                    let (left, right) = match side {
                        Side::Left => (Some(row.clone()), Some(other_row.clone())),
                        Side::Right => (Some(other_row.clone()), Some(row.clone())),
                    };
                    out.rows.push(Joined {
                        key: r.key.clone(),
                        left,
                        right,
                        time: time.max(*other_time),
                        tombstone: false,
                        at: r.at,
                    });
                }
            }
            if matched || !self.keeps(side) {
                continue;
            }
            if !self.wait_for_close || to < self.stream_time {
                let (left, right) = match side {
                    Side::Left => (Some(row), None),
                    Side::Right => (None, Some(row)),
                };
                out.rows.push(Joined {
                    key: r.key,
                    left,
                    right,
                    time,
                    tombstone: false,
                    at: r.at,
                });
            } else {
                self.min_time = self.min_time.min(time);
                self.outer
                    .insert((time, side_byte(side), r.key, self.seq), row);
            }
        }
        Ok(out)
    }
}
