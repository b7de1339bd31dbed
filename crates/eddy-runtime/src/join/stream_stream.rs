//! Stream-stream join: each side buffers its records for the join window plus the grace period, and
//! a record joins the other side's buffered records of its key within `WITHIN` of it; the joined row
//! takes the later time. Kafka Streams' rules (`KStreamKStreamJoin`), which ksqlDB's results follow:
//! - a buffer shows only records newer than its own latest time minus its retention (window + grace);
//! - without `GRACE PERIOD`, an unmatched record of a side the join keeps is emitted at once with
//!   NULLs (grace 24 hours); with it, it waits in the outer buffer until its window has closed
//!   (its time + the window's reach on its side + grace < stream time) and is dropped if a match
//!   comes first; a record whose window already closed when it arrives is emitted at once;
//! - stream time is the latest record time of either side.

use std::collections::{BTreeMap, VecDeque};

use hashbrown::DefaultHashBuilder;

use eddy_common::Result;
use eddy_sql::join::JoinType;
use eddy_sql::statement::JoinWithin;
use eddy_sql::window::DEFAULT_GRACE_MS;

use super::key_index::{Key, KeyIndex};
use super::{
    Change, Entry, EntryId, EntryKind, JoinOperator, JoinOutput, Joined, Origin, SharedRow, Side,
    SideRow,
};

/// A buffered record: its time and arrival number, and its row.
#[derive(Debug)]
struct Buffered {
    at: (i64, u64),
    row: SharedRow,
}

/// A key's buffered records in (time, arrival) order: most keys have one.
#[derive(Debug)]
enum Records {
    One(Buffered),
    Many(Vec<Buffered>),
}

impl Records {
    /// The arrival number of its first record (read to fetch it into the cache).
    fn first_seq(&self) -> u64 {
        match self {
            Records::One(one) => one.at.1,
            Records::Many(many) => many.len() as u64,
        }
    }

    fn as_slice(&self) -> &[Buffered] {
        match self {
            Records::One(one) => std::slice::from_ref(one),
            Records::Many(many) => many,
        }
    }

    /// Adds a record in its place.
    fn insert(&mut self, record: Buffered) {
        let many = match self {
            Records::Many(many) => many,
            Records::One(_) => {
                let Records::One(one) =
                    std::mem::replace(self, Records::Many(Vec::with_capacity(2)))
                else {
                    unreachable!("matched as one record")
                };
                let Records::Many(many) = self else {
                    unreachable!("just made many")
                };
                many.push(one);
                many
            }
        };
        let i = many.partition_point(|b| b.at < record.at);
        many.insert(i, record);
    }

    /// Removes the record of `at`; returns whether none is left.
    fn remove(&mut self, at: (i64, u64)) -> bool {
        match self {
            Records::One(one) => one.at == at,
            Records::Many(many) => {
                if let Ok(i) = many.binary_search_by_key(&at, |b| b.at) {
                    many.remove(i);
                }
                many.is_empty()
            }
        }
    }
}

/// One side's buffered records.
#[derive(Debug)]
struct Buffer {
    /// The latest time put in.
    observed: Option<i64>,
    /// Each key's records.
    by_key: KeyIndex<Records>,
    /// Every record by time, to purge the expired, with where it came from.
    by_time: TimeIndex,
}

/// A buffered record's key (and its hash) and origin. The key is a copy: expiring records read it
/// when the record's own shared key has long left the cache.
#[derive(Debug)]
struct TimedKey {
    key: Key,
    hash: u64,
    origin: Origin,
}

/// A buffered record's key and origin, by (time, arrival).
type Timed = ((i64, u64), TimedKey);

/// A buffer's records by time. Most records come in time order: those go to the back of a queue;
/// the rest into an ordered map. The oldest is the older of the two fronts.
#[derive(Debug, Default)]
struct TimeIndex {
    in_order: VecDeque<Timed>,
    out_of_order: BTreeMap<(i64, u64), TimedKey>,
}

impl TimeIndex {
    fn insert(&mut self, at: (i64, u64), entry: TimedKey) {
        if self.in_order.back().is_none_or(|(last, _)| *last <= at) {
            self.in_order.push_back((at, entry));
        } else {
            self.out_of_order.insert(at, entry);
        }
    }

    /// Takes the oldest record if it is older than `horizon`.
    fn pop_older_than(&mut self, horizon: i64) -> Option<Timed> {
        let queued = self.in_order.front().map(|(at, _)| *at);
        let mapped = self.out_of_order.first_key_value().map(|(at, _)| *at);
        match (queued, mapped) {
            (Some(q), m) if q.0 < horizon && m.is_none_or(|m| q < m) => self.in_order.pop_front(),
            (_, Some(m)) if m.0 < horizon => self.out_of_order.pop_first(),
            _ => None,
        }
    }

    /// The key hashes of the `n` oldest records in time order (those most likely to expire next).
    fn oldest_hashes(&self, n: usize) -> impl Iterator<Item = u64> + '_ {
        self.in_order.iter().take(n).map(|(_, t)| t.hash)
    }
}

impl Buffer {
    fn new(hasher: DefaultHashBuilder) -> Self {
        Buffer {
            observed: None,
            by_key: KeyIndex::with_hasher(hasher),
            by_time: TimeIndex::default(),
        }
    }

    /// The oldest time still visible.
    fn horizon(&self, retention: i64) -> i64 {
        self.observed
            .map_or(i64::MIN, |t| t.saturating_sub(retention).saturating_add(1))
    }

    /// Forgets what can no longer be seen once `time` is observed; returns where each forgotten
    /// record came from.
    fn advance(&mut self, time: i64, retention: i64) -> Vec<Origin> {
        self.observed = Some(self.observed.map_or(time, |t| t.max(time)));
        let horizon = self.horizon(retention);
        let mut forgotten = Vec::new();
        while let Some((at, timed)) = self.by_time.pop_older_than(horizon) {
            forgotten.push(timed.origin);
            let key = timed.key.bytes();
            if let Some(records) = self.by_key.get_mut(timed.hash, key)
                && records.remove(at)
            {
                self.by_key.remove(timed.hash, key);
            }
        }
        forgotten
    }

    /// Buffers a record (no older than what the buffer shows) of a key of hash `hash`.
    fn insert(&mut self, key: &[u8], hash: u64, at: (i64, u64), row: SharedRow, origin: Origin) {
        self.observed = Some(self.observed.map_or(at.0, |t| t.max(at.0)));
        let mut record = Some(Buffered { at, row });
        let records = self.by_key.get_or_insert_with(hash, key, || {
            Records::One(record.take().expect("not taken yet"))
        });
        if let Some(record) = record {
            records.insert(record);
        }
        let key = Key::new(key);
        self.by_time.insert(at, TimedKey { key, hash, origin });
    }

    /// A key's records with times in `from..=to`, oldest first.
    fn range(&self, hash: u64, key: &SharedRow, from: i64, to: i64) -> &[Buffered] {
        let Some(records) = self.by_key.get(hash, key.bytes()) else {
            return &[];
        };
        let rows = records.as_slice();
        let start = rows.partition_point(|b| b.at.0 < from);
        let end = rows.partition_point(|b| b.at.0 <= to);
        &rows[start..end.max(start)]
    }
}

/// How many records' keys are fetched together before they are processed.
const TOUCHED: usize = 128;

/// An unmatched record waiting for its window to close: by time, side (right first), key.
type OuterKey = (i64, u8, SharedRow, u64);

/// What a waiting record holds: its row and where it came from.
type Waiting = (SharedRow, Origin);

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
    outer: BTreeMap<OuterKey, Waiting>,
    stream_time: i64,
    /// The oldest time in the outer buffer, as Kafka Streams tracks it.
    min_time: i64,
    seq: u64,
    /// The changes since the last [`JoinOperator::changes`], when they are listed.
    log: Option<Vec<Change>>,
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
            buffers: {
                // Both sides hash a key alike: a record's key is hashed once.
                let hasher = DefaultHashBuilder::default();
                [Buffer::new(hasher), Buffer::new(hasher)]
            },
            outer: BTreeMap::new(),
            stream_time: i64::MIN,
            min_time: i64::MAX,
            seq: 0,
            log: None,
        }
    }

    /// Lists a change, when changes are listed.
    fn logged(&mut self, change: impl FnOnce() -> Change) {
        if let Some(log) = &mut self.log {
            log.push(change());
        }
    }

    /// Removes a waiting record.
    fn stop_waiting(&mut self, k: &OuterKey) -> Option<Waiting> {
        let waiting = self.outer.remove(k)?;
        let side = side_of(k.1);
        self.logged(|| {
            Change::Delete(EntryId {
                kind: EntryKind::Waiting,
                side,
                origin: waiting.1,
            })
        });
        Some(waiting)
    }

    /// A record of a side the join keeps found no match (`reach`: its time and the latest time
    /// that joins it): it is emitted with NULLs, or waits for its window to close.
    fn unmatched(
        &mut self,
        side: Side,
        key: SharedRow,
        row: SharedRow,
        (time, to): (i64, i64),
        (at, origin): (usize, Origin),
        out: &mut JoinOutput,
    ) {
        if !self.wait_for_close || to < self.stream_time {
            out.rows.push(alone(side, key, row, time, at));
            return;
        }
        self.min_time = self.min_time.min(time);
        let seq = self.seq;
        self.logged(|| {
            Change::Put(Entry {
                id: EntryId {
                    kind: EntryKind::Waiting,
                    side,
                    origin,
                },
                key: key.clone(),
                row: row.clone(),
                time,
                seq,
            })
        });
        self.outer
            .insert((time, side_byte(side), key, seq), (row, origin));
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
            let waiting = side_of(*side_byte);
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
            let Some((row, _)) = self.stop_waiting(&k) else {
                continue;
            };
            let (time, side_byte, key, _) = k;
            out.rows.push(alone(side_of(side_byte), key, row, time, at));
        }
    }
}

/// A row of one side with NULLs for the other.
fn alone(side: Side, key: SharedRow, row: SharedRow, time: i64, at: usize) -> Joined {
    let (left, right) = match side {
        Side::Left => (Some(row), None),
        Side::Right => (None, Some(row)),
    };
    Joined {
        key,
        left,
        right,
        time,
        tombstone: false,
        at,
    }
}

/// The side a waiting record's side byte names (see [`side_byte`]).
fn side_of(byte: u8) -> Side {
    if byte == 1 { Side::Left } else { Side::Right }
}

/// How a waiting record's key names its side: right first, so that at the same time a right
/// record's NULL row comes first.
fn side_byte(side: Side) -> u8 {
    match side {
        Side::Left => 1,
        Side::Right => 0,
    }
}

impl JoinOperator for StreamStreamJoin {
    fn process(&mut self, side: Side, rows: Vec<SideRow>) -> Result<JoinOutput> {
        let mut out = JoinOutput::default();
        let hashes: Vec<u64> = rows
            .iter()
            .map(|r| self.buffers[0].by_key.hash(r.key.bytes()))
            .collect();
        for (n, (r, hash)) in rows.into_iter().zip(hashes.iter().copied()).enumerate() {
            if n % TOUCHED == 0 {
                // The next records' keys in both buffers, and the keys likely to expire, are
                // fetched together.
                let next = || hashes[n..].iter().take(TOUCHED).copied();
                let own = &self.buffers[side.index()].by_key;
                own.touch(next(), Records::first_seq);
                self.buffers[side.other().index()]
                    .by_key
                    .touch(next(), Records::first_seq);
                let oldest = self.buffers[side.index()].by_time.oldest_hashes(TOUCHED);
                own.touch(oldest, Records::first_seq);
            }
            // A record without a value joins nothing.
            let Some(row) = r.row else { continue };
            let time = r.time;
            let from = time.saturating_sub(self.reach_before(side)).max(0);
            let to = time.saturating_add(self.reach_after(side)).max(0);
            self.stream_time = self.stream_time.max(time);
            self.seq += 1;
            let buffer = &mut self.buffers[side.index()];
            let forgotten = buffer.advance(time, self.retention);
            let kept = time >= buffer.horizon(self.retention);
            if kept {
                buffer.insert(r.key.bytes(), hash, (time, self.seq), row.clone(), r.origin);
            } else {
                out.late_records += 1;
            }
            // The record's own entry is listed after everything its processing changed: a
            // changelog write cut short that holds it holds all of that, so replay may skip it.
            let mut own = None;
            if let Some(log) = &mut self.log {
                log.extend(forgotten.into_iter().map(|origin| {
                    Change::Delete(EntryId {
                        kind: EntryKind::Buffered,
                        side,
                        origin,
                    })
                }));
                own = kept.then(|| {
                    Change::Put(Entry {
                        id: EntryId {
                            kind: EntryKind::Buffered,
                            side,
                            origin: r.origin,
                        },
                        key: r.key.clone(),
                        row: row.clone(),
                        time,
                        seq: self.seq,
                    })
                });
            }
            if self.wait_for_close && time == self.stream_time {
                self.emit_closed(side, r.at, &mut out);
            }
            let other = &self.buffers[side.other().index()];
            let from = from.max(other.horizon(self.retention));
            let mut matched = false;
            let mut matched_waiting = Vec::new();
            if from <= to {
                for Buffered {
                    at: (other_time, _),
                    row: other_row,
                    ..
                } in other.range(hash, &r.key, from, to)
                {
                    matched = true;
                    if !self.outer.is_empty() {
                        // The other record has its match: it no longer waits as an unmatched one.
                        let lo = (*other_time, side_byte(side.other()), r.key.clone(), 0);
                        let hi = (
                            *other_time,
                            side_byte(side.other()),
                            r.key.clone(),
                            u64::MAX,
                        );
                        matched_waiting.extend(self.outer.range(lo..=hi).map(|(k, _)| k.clone()));
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
            for k in &matched_waiting {
                self.stop_waiting(k);
            }
            if !matched && self.keeps(side) {
                self.unmatched(side, r.key, row, (time, to), (r.at, r.origin), &mut out);
            }
            if let (Some(log), Some(own)) = (&mut self.log, own) {
                log.push(own);
            }
        }
        Ok(out)
    }

    fn log_changes(&mut self) {
        self.log.get_or_insert_with(Vec::new);
    }

    fn changes(&mut self) -> (Vec<Change>, i64) {
        let changes = self.log.as_mut().map(std::mem::take).unwrap_or_default();
        (changes, self.stream_time)
    }

    /// Puts the entries back where they were; the buffers' latest times and the arrival count
    /// follow from them.
    fn restore(&mut self, entries: Vec<Entry>, stream_time: i64) {
        self.stream_time = self.stream_time.max(stream_time);
        for e in entries {
            self.seq = self.seq.max(e.seq);
            match e.id.kind {
                EntryKind::Buffered => {
                    let buffer = &mut self.buffers[e.id.side.index()];
                    let hash = buffer.by_key.hash(e.key.bytes());
                    buffer.insert(e.key.bytes(), hash, (e.time, e.seq), e.row, e.id.origin);
                }
                EntryKind::Waiting => {
                    self.min_time = self.min_time.min(e.time);
                    self.outer.insert(
                        (e.time, side_byte(e.id.side), e.key, e.seq),
                        (e.row, e.id.origin),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::row::{RowConverter, SortField};

    #[test]
    fn the_time_index_gives_records_oldest_first_whatever_order_they_came_in() {
        let converter = RowConverter::new(vec![SortField::new(
            datafusion::arrow::datatypes::DataType::Int32,
        )])
        .unwrap();
        let rows = converter
            .convert_columns(&[std::sync::Arc::new(Int32Array::from(vec![1]))])
            .unwrap();
        let mut index = TimeIndex::default();
        for (seq, time) in [10, 20, 15, 30, 5, 30, 25].into_iter().enumerate() {
            let origin = Origin {
                input: 0,
                partition: 0,
                offset: seq as i64,
                sub: 0,
            };
            let key = Key::new(rows.row(0).data());
            index.insert(
                (time, seq as u64),
                TimedKey {
                    key,
                    hash: 0,
                    origin,
                },
            );
        }
        let mut popped = Vec::new();
        while let Some((at, _)) = index.pop_older_than(26) {
            popped.push(at);
        }
        assert_eq!(popped, [(5, 4), (10, 0), (15, 2), (20, 1), (25, 6)]);
        assert!(
            index
                .pop_older_than(31)
                .is_some_and(|(at, _)| at == (30, 3))
        );
        assert!(
            index
                .pop_older_than(31)
                .is_some_and(|(at, _)| at == (30, 5))
        );
        assert!(index.pop_older_than(i64::MAX).is_none());
    }
}
