//! Writing an aggregation's state to its changelog and restoring it: which groups and table rows
//! changed since the last write, their records (see [`crate::changelog`]; GROUP BY values, states and
//! arguments in Eddy's own row encoding, [`crate::state_row`]), and, after a restore, which replayed
//! input the restored state already includes. Records of versions before, in Arrow's row format, are
//! read too, and the next write rewrites them in the current layout.
//!
//! Windows that pass their retention are not deleted from the changelog (a tombstone written in a
//! write that a crash cuts short would let replay rebuild the window from part of its input); the
//! changelog topic's retention removes them, as Kafka Streams' window stores do, and a restore
//! evicts them again.

use std::collections::{HashMap, HashSet};

use datafusion::arrow::array::{Array, ArrayRef, Int32Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;

use eddy_common::{Result, internal_err};
use eddy_sql::statement::WindowKind;

use super::{AggregateState, DfResult, df};
use crate::changelog::{
    Checkpoint, GroupRecord, Positions, RowRecord, Rows, SinkMark, StateChange, StateKey, covers,
};
use crate::format::window::Bounds;
use crate::state_row;

/// What a logged aggregation tracks for its changelog.
#[derive(Debug)]
pub(super) struct StateLog {
    /// Groups changed since the last write (a group's `logged` flag says whether it is listed).
    groups: Vec<usize>,
    /// Records to delete: groups that ended.
    ended: Vec<Ended>,
    /// Table rows (by source key) changed since the last write.
    rows: HashSet<Box<[u8]>>,
    /// The types of the accumulators' state columns.
    state_types: Vec<DataType>,
    /// Reads states written in Arrow's row format by versions before.
    arrow_states: RowConverter,
    /// How many state columns each accumulator has.
    state_widths: Vec<usize>,
    /// The types of a table row's aggregate arguments, and how versions before wrote them.
    args: Option<(Vec<DataType>, RowConverter)>,
    /// After a restore: where each restored group's and table row's record was written; replayed input
    /// before those positions is already in them.
    covered_groups: HashMap<usize, Positions>,
    covered_rows: HashMap<Box<[u8]>, Positions>,
    /// Replay is over once input reaches these positions.
    recover_until: Positions,
}

/// A group read back: its GROUP BY values as the key converter's row, its window, its record and
/// its record's key.
type Restored<'a> = (Vec<u8>, Option<Bounds>, GroupRecord, &'a Vec<u8>);

/// A group by its GROUP BY values and window bounds.
type GroupId = (Vec<u8>, Option<(i64, i64)>);

/// A record to delete at the next write.
#[derive(Debug)]
pub(super) enum Ended {
    /// An ended group: its GROUP BY values (as the key converter's row) and window.
    Group(Vec<u8>, Option<Bounds>),
    /// A record by its key as written (a leftover found on restore, or one a restore rewrote).
    Record(Vec<u8>),
}

/// Each of the first `n` rows of `columns` in Eddy's row encoding.
fn eddy_rows(columns: &[ArrayRef], n: usize) -> Result<Vec<Vec<u8>>> {
    (0..n)
        .map(|i| {
            let mut out = Vec::new();
            state_row::encode(columns, i, &mut out)?;
            Ok(out)
        })
        .collect()
}

impl AggregateState {
    /// Tracks changes so that [`AggregateState::changes`] can write them to a changelog.
    pub fn log_changes(&mut self) -> Result<()> {
        let fresh = self.accumulators()?;
        let mut state_types = Vec::new();
        let mut state_widths = Vec::new();
        for mut acc in fresh {
            let state = acc.state().map_err(df)?;
            state_widths.push(state.len());
            state_types.extend(state.iter().map(ScalarValue::data_type));
        }
        let arrow_states = RowConverter::new(
            state_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )
        .map_err(|e| internal_err!("the aggregation's state cannot be kept in a changelog: {e}"))?;
        let args = match self.table_keys {
            Some(_) => {
                let types = self
                    .spec
                    .aggregates
                    .iter()
                    .flat_map(|a| a.expressions())
                    .map(|e| e.data_type(&self.spec.input_schema))
                    .collect::<DfResult<Vec<_>>>()
                    .map_err(df)?;
                let arrow = RowConverter::new(types.iter().cloned().map(SortField::new).collect())
                    .map_err(df)?;
                Some((types, arrow))
            }
            None => None,
        };
        self.log = Some(Box::new(StateLog {
            groups: Vec::new(),
            ended: Vec::new(),
            rows: HashSet::new(),
            state_types,
            arrow_states,
            state_widths,
            args,
            covered_groups: HashMap::new(),
            covered_rows: HashMap::new(),
            recover_until: Vec::new(),
        }));
        Ok(())
    }

    /// The changelog records of everything that changed since the last call: groups first, then
    /// merged-away sessions, then table rows, then the checkpoint — written in this order, any prefix
    /// of them restores to a state that replay finishes exactly. `positions` are the input positions
    /// the state now includes, `sink` where an exactly-once output stands.
    pub fn changes(
        &mut self,
        positions: &[(i32, i64)],
        sink: Option<&SinkMark>,
    ) -> Result<Vec<StateChange>> {
        self.with_log(|state, log| state.write_changes(log, positions, sink))
            .unwrap_or(Ok(Vec::new()))
    }

    /// Runs `f` with the changelog bookkeeping taken out of the state (`None` when not logged).
    fn with_log<T>(
        &mut self,
        f: impl FnOnce(&mut Self, &mut StateLog) -> Result<T>,
    ) -> Option<Result<T>> {
        let mut log = self.log.take()?;
        let result = f(self, &mut log);
        self.log = Some(log);
        Some(result)
    }

    fn write_changes(
        &mut self,
        log: &mut StateLog,
        positions: &[(i32, i64)],
        sink: Option<&SinkMark>,
    ) -> Result<Vec<StateChange>> {
        let mut groups = Vec::new();
        let mut states: Vec<Vec<ScalarValue>> = vec![Vec::new(); log.state_widths.iter().sum()];
        for group in std::mem::take(&mut log.groups) {
            let Some(g) = self.groups[group].as_mut().filter(|g| g.logged) else {
                continue;
            };
            g.logged = false;
            let mut column = 0;
            for acc in &mut g.accumulators {
                for v in acc.state().map_err(df)? {
                    states[column].push(v);
                    column += 1;
                }
            }
            groups.push(group);
        }
        let mut out = Vec::with_capacity(groups.len() + log.ended.len() + log.rows.len());
        if !groups.is_empty() {
            let columns = states
                .into_iter()
                .map(|c| ScalarValue::iter_to_array(c).map_err(df))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let states = eddy_rows(&columns, groups.len())?;
            let keys: Vec<Vec<u8>> = groups
                .iter()
                .map(|g| self.groups[*g].as_ref().expect("live group").key.to_vec())
                .collect();
            let stored = self.stored_keys(&keys)?;
            for ((group, states), key) in groups.into_iter().zip(states).zip(&stored) {
                let g = self.groups[group].as_ref().expect("live group");
                let record = GroupRecord {
                    rows: Rows::Eddy,
                    positions: positions.to_vec(),
                    stream_time: self.stream_time,
                    last_rowtime: g.last_rowtime,
                    partition: g.partition,
                    emitted: g.emitted,
                    closed: g.closed,
                    states,
                };
                out.push(StateChange {
                    key: StateKey::Group {
                        key,
                        window: g.window,
                        rows: Rows::Eddy,
                    }
                    .encode(),
                    value: Some(record.encode()),
                });
            }
        }
        let ended = std::mem::take(&mut log.ended);
        let ended_keys: Vec<Vec<u8>> = ended
            .iter()
            .filter_map(|e| match e {
                Ended::Group(key, _) => Some(key.clone()),
                Ended::Record(_) => None,
            })
            .collect();
        let mut stored = self.stored_keys(&ended_keys)?.into_iter();
        for e in ended {
            let key = match e {
                Ended::Group(_, window) => StateKey::Group {
                    key: &stored.next().expect("one per ended group"),
                    window,
                    rows: Rows::Eddy,
                }
                .encode(),
                Ended::Record(key) => key,
            };
            out.push(StateChange { key, value: None });
        }
        for source_key in std::mem::take(&mut log.rows) {
            let key = StateKey::Row(&source_key).encode();
            let value = match self.table_rows.get(&source_key) {
                Some((group, args)) => {
                    let columns = args
                        .iter()
                        .flatten()
                        .map(|v| v.to_array().map_err(df))
                        .collect::<Result<Vec<_>>>()?;
                    let mut row = Vec::new();
                    state_row::encode(&columns, 0, &mut row)?;
                    let key = self.groups[*group]
                        .as_ref()
                        .expect("live group")
                        .key
                        .to_vec();
                    let group = self.stored_keys(&[key])?.remove(0);
                    Some(
                        RowRecord {
                            rows: Rows::Eddy,
                            positions: positions.to_vec(),
                            group,
                            args: row,
                        }
                        .encode(),
                    )
                }
                None => None,
            };
            out.push(StateChange { key, value });
        }
        out.push(StateChange {
            key: StateKey::Checkpoint.encode(),
            value: Some(
                Checkpoint {
                    positions: positions.to_vec(),
                    stream_time: self.stream_time,
                    sink: sink.cloned(),
                }
                .encode(),
            ),
        });
        Ok(out)
    }

    /// Rebuilds the state from changelog records (in the order they were written; the latest record
    /// of a key wins). Returns the checkpoint of the last complete write, whose positions the input
    /// resumes from (`None` when there was none, and the state is empty).
    pub fn restore(
        &mut self,
        records: impl IntoIterator<Item = StateChange>,
    ) -> Result<Option<Checkpoint>> {
        self.with_log(|state, log| state.restore_logged(log, records))
            .unwrap_or_else(|| Err(internal_err!("restoring an aggregation that is not logged")))
    }

    fn restore_logged(
        &mut self,
        log: &mut StateLog,
        records: impl IntoIterator<Item = StateChange>,
    ) -> Result<Option<Checkpoint>> {
        let mut latest: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        for r in records {
            latest.insert(r.key, r.value);
        }
        let windowed = self.spec.window.is_some();
        let mut found = Vec::new();
        let mut rows = Vec::new();
        let mut checkpoint = None;
        for (key, value) in &latest {
            let Some(value) = value else { continue };
            match StateKey::decode(key, windowed)? {
                StateKey::Checkpoint => checkpoint = Some(Checkpoint::decode(value)?),
                StateKey::Group {
                    key: k,
                    window,
                    rows,
                } => found.push((k, rows, window, GroupRecord::decode(value)?, key)),
                StateKey::Row(source) => rows.push((source, RowRecord::decode(value)?)),
            }
        }
        let Some(checkpoint) = checkpoint else {
            // Nothing was written completely: there is no state yet.
            return Ok(None);
        };
        let keys = self.loaded_keys(&found.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>())?;
        let mut groups: Vec<Restored<'_>> = found
            .into_iter()
            .zip(keys)
            .map(|((_, _, window, record, record_key), key)| (key, window, record, record_key))
            .collect();
        // A group in both layouts (a rewrite a crash cut short): its record in this one counts.
        let current: HashSet<GroupId> = groups
            .iter()
            .filter(|g| g.2.rows == Rows::Eddy)
            .map(|g| (g.0.clone(), g.1.map(|w| (w.start, w.end))))
            .collect();
        groups.retain(|(key, window, record, record_key)| {
            let stale = record.rows == Rows::Arrow
                && current.contains(&(key.clone(), window.map(|w| (w.start, w.end))));
            if stale {
                log.ended.push(Ended::Record(record_key.to_vec()));
            }
            !stale
        });
        if matches!(
            self.spec.window.as_ref().map(|w| &w.kind),
            Some(WindowKind::Session { .. })
        ) {
            // A crash between writing a merged session and deleting the sessions it replaced leaves
            // both: a session inside another of its key is such a leftover.
            let all: Vec<(Vec<u8>, Bounds)> = groups
                .iter()
                .map(|(k, w, _, _)| (k.clone(), w.expect("session")))
                .collect();
            groups.retain(|(k, w, _, record_key)| {
                let w = w.expect("session");
                let inside = all.iter().any(|(other_key, o)| {
                    other_key == k && *o != w && o.start <= w.start && w.end <= o.end
                });
                if inside {
                    log.ended.push(Ended::Record(record_key.to_vec()));
                }
                !inside
            });
        }
        self.stream_time = checkpoint.stream_time;
        // Windows evicted before the checkpoint stay evicted (their records may be older than their
        // last changes, which were not written once they were gone).
        if let Some(spec) = &self.spec.window {
            let (grace, retention) = (spec.grace_ms(), spec.retention_ms());
            groups.retain(|(_, w, _, _)| {
                w.is_some_and(|w| self.evicted_at(w, grace, retention) > self.stream_time)
            });
        }
        let states = Loaded::new(
            &groups
                .iter()
                .map(|g| (g.2.states.as_slice(), g.2.rows))
                .collect::<Vec<_>>(),
            &log.state_types,
            &log.arrow_states,
        )?;
        for (i, (key, window, record, record_key)) in groups.into_iter().enumerate() {
            let group = self.create(&key, window)?;
            let (columns, at) = states.row(i);
            let mut column = 0;
            let g = self.get(group);
            for (acc, width) in g.accumulators.iter_mut().zip(&log.state_widths) {
                let state: Vec<ArrayRef> = columns[column..column + width]
                    .iter()
                    .map(|c| c.slice(at, 1))
                    .collect();
                acc.merge_batch(&state).map_err(df)?;
                column += width;
            }
            g.last_rowtime = record.last_rowtime;
            g.partition = record.partition;
            g.emitted = record.emitted;
            g.closed = record.closed;
            if record.rows == Rows::Arrow {
                // Written again in this version's layout at the next write, the old record deleted.
                g.logged = true;
                log.groups.push(group);
                log.ended.push(Ended::Record(record_key.to_vec()));
            }
            self.index_restored(group, window);
            merge_positions(&mut log.recover_until, &record.positions);
            log.covered_groups.insert(group, record.positions);
        }
        if let Some((arg_types, arrow_args)) = &log.args {
            let group_keys = self.loaded_keys(
                &rows
                    .iter()
                    .map(|r| (r.1.group.as_slice(), r.1.rows))
                    .collect::<Vec<_>>(),
            )?;
            let args = Loaded::new(
                &rows
                    .iter()
                    .map(|r| (r.1.args.as_slice(), r.1.rows))
                    .collect::<Vec<_>>(),
                arg_types,
                arrow_args,
            )?;
            for (i, ((source, record), group_key)) in rows.into_iter().zip(group_keys).enumerate() {
                let Some(group) = self.index.get(&self.groups, &group_key, None) else {
                    return Err(internal_err!(
                        "the changelog holds a table row whose group it does not hold"
                    ));
                };
                let (columns, at) = args.row(i);
                let mut column = 0;
                let mut row_args = Vec::new();
                for a in &self.spec.aggregates {
                    let n = a.expressions().len();
                    row_args.push(
                        columns[column..column + n]
                            .iter()
                            .map(|c| ScalarValue::try_from_array(c, at))
                            .collect::<DfResult<Vec<_>>>()
                            .map_err(df)?,
                    );
                    column += n;
                }
                if record.rows == Rows::Arrow {
                    log.rows.insert(source.into());
                }
                self.table_rows.insert(source.into(), (group, row_args));
                merge_positions(&mut log.recover_until, &record.positions);
                log.covered_rows.insert(source.into(), record.positions);
            }
        }
        // Input before the checkpoint is not read again.
        log.recover_until
            .retain(|(p, o)| !checkpoint.positions.iter().any(|(cp, c)| cp == p && o <= c));
        if log.recover_until.is_empty() {
            log.covered_groups.clear();
            log.covered_rows.clear();
        }
        Ok(Some(checkpoint))
    }

    /// Puts a restored group in the indexes and sets its window's timers.
    fn index_restored(&mut self, group: usize, window: Option<Bounds>) {
        let Some(spec) = self.spec.window.clone() else {
            self.index.insert(&self.groups, group);
            return;
        };
        let w = window.expect("a windowed group");
        if !matches!(spec.kind, WindowKind::Session { .. }) {
            self.index.insert(&self.groups, group);
        }
        self.add_window(group);
        self.set_timers(group, w, spec.grace_ms(), spec.retention_ms());
    }

    /// The GROUP BY row converter, made from the aggregated schema when no batch made it yet.
    pub(super) fn ensure_key_converter(&mut self) -> Result<()> {
        if self.converter.is_none() {
            let fields = self.spec.schema.fields()[..self.spec.group_exprs.len()]
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields).map_err(df)?);
        }
        Ok(())
    }

    /// Lists a changed group for the next changelog write.
    pub(super) fn log_group(&mut self, group: usize) {
        let Some(log) = self.log.as_mut() else { return };
        let g = self.groups[group].as_mut().expect("live group");
        if !g.logged {
            g.logged = true;
            log.groups.push(group);
        }
    }

    /// Lists an ended group's record for deletion.
    pub(super) fn log_end(&mut self, group: usize) {
        let (Some(log), Some(g)) = (self.log.as_mut(), self.groups[group].as_ref()) else {
            return;
        };
        log.ended.push(Ended::Group(g.key.to_vec(), g.window));
    }

    /// GROUP BY values as the key converter's rows, in Eddy's row encoding (how record keys hold
    /// them).
    fn stored_keys(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_key_converter()?;
        let converter = self.converter.as_ref().expect("made above");
        let parser = converter.parser();
        let columns = converter
            .convert_rows(keys.iter().map(|k| parser.parse(k)))
            .map_err(df)?;
        eddy_rows(&columns, keys.len())
    }

    /// Record keys' GROUP BY values (each laid out as its record says) as the key converter's rows.
    fn loaded_keys(&mut self, keys: &[(&[u8], Rows)]) -> Result<Vec<Vec<u8>>> {
        self.ensure_key_converter()?;
        let types: Vec<DataType> = self.spec.schema.fields()[..self.spec.group_exprs.len()]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let eddy: Vec<&[u8]> = keys
            .iter()
            .filter(|(_, rows)| *rows == Rows::Eddy)
            .map(|(k, _)| *k)
            .collect();
        let converter = self.converter.as_ref().expect("made above");
        let converted = converter
            .convert_columns(&state_row::decode(&types, &eddy)?)
            .map_err(df)?;
        let mut next = 0;
        Ok(keys
            .iter()
            .map(|(k, rows)| match rows {
                Rows::Arrow => k.to_vec(),
                Rows::Eddy => {
                    next += 1;
                    converted.row(next - 1).as_ref().to_vec()
                }
            })
            .collect())
    }

    /// Lists a changed table row for the next changelog write.
    pub(super) fn log_row(&mut self, source_key: &[u8]) {
        if let Some(log) = self.log.as_mut()
            && !log.rows.contains(source_key)
        {
            log.rows.insert(source_key.into());
        }
    }

    /// Whether a restored group already includes the input at `offset` of `partition`.
    pub(super) fn covered(&self, group: usize, partition: i32, offset: i64) -> bool {
        self.log
            .as_ref()
            .and_then(|l| l.covered_groups.get(&group))
            .is_some_and(|p| covers(p, partition, offset))
    }

    /// Whether a restored table row already reflects the input at `offset` of `partition`.
    pub(super) fn row_covered(&self, source_key: &[u8], partition: i32, offset: i64) -> bool {
        self.log
            .as_ref()
            .and_then(|l| l.covered_rows.get(source_key))
            .is_some_and(|p| covers(p, partition, offset))
    }

    /// Whether a restored session of `key` holding `ts` already includes the input.
    pub(super) fn session_covered(&self, key: &[u8], ts: i64, partition: i32, offset: i64) -> bool {
        let Some(log) = self.log.as_ref().filter(|l| !l.covered_groups.is_empty()) else {
            return false;
        };
        self.windows.get(key).is_some_and(|sessions| {
            sessions.iter().any(|s| {
                self.groups[*s]
                    .as_ref()
                    .and_then(|g| g.window)
                    .is_some_and(|w| w.start <= ts && ts <= w.end)
                    && log
                        .covered_groups
                        .get(s)
                        .is_some_and(|p| covers(p, partition, offset))
            })
        })
    }

    /// A released slot no longer holds its restored group.
    pub(super) fn forget_covered(&mut self, group: usize) {
        if let Some(log) = self.log.as_mut() {
            log.covered_groups.remove(&group);
        }
    }

    /// Ends replay once the input has passed every restored record's positions.
    pub(super) fn recovered_to(&mut self, partitions: &Int32Array, offsets: &Int64Array) {
        let Some(log) = self.log.as_mut().filter(|l| !l.recover_until.is_empty()) else {
            return;
        };
        for (p, o) in partitions.values().iter().zip(offsets.values()) {
            log.recover_until
                .retain(|(up, until)| !(up == p && o + 1 >= *until));
        }
        if log.recover_until.is_empty() {
            log.covered_groups.clear();
            log.covered_rows.clear();
        }
    }
}

/// Rows read back from records, whichever layout each was written in: a record's row is at
/// [`Loaded::row`] of its position.
struct Loaded {
    eddy: Vec<ArrayRef>,
    arrow: Vec<ArrayRef>,
    /// Per record: in which columns (`true`: `eddy`) and at which row.
    at: Vec<(bool, usize)>,
}

impl Loaded {
    fn new(rows: &[(&[u8], Rows)], types: &[DataType], arrow: &RowConverter) -> Result<Self> {
        let eddy_rows: Vec<&[u8]> = rows
            .iter()
            .filter(|(_, r)| *r == Rows::Eddy)
            .map(|(b, _)| *b)
            .collect();
        let parser = arrow.parser();
        let arrow_columns = arrow
            .convert_rows(
                rows.iter()
                    .filter(|(_, r)| *r == Rows::Arrow)
                    .map(|(b, _)| parser.parse(b)),
            )
            .map_err(df)?;
        let (mut e, mut a) = (0, 0);
        let at = rows
            .iter()
            .map(|(_, r)| {
                let (counter, eddy) = match r {
                    Rows::Eddy => (&mut e, true),
                    Rows::Arrow => (&mut a, false),
                };
                *counter += 1;
                (eddy, *counter - 1)
            })
            .collect();
        Ok(Loaded {
            eddy: state_row::decode(types, &eddy_rows)?,
            arrow: arrow_columns,
            at,
        })
    }

    /// The columns a record's row is in, and its index there.
    fn row(&self, record: usize) -> (&[ArrayRef], usize) {
        let (eddy, at) = self.at[record];
        (if eddy { &self.eddy } else { &self.arrow }, at)
    }
}

/// Raises `into` to at least `positions`, partition by partition.
fn merge_positions(into: &mut Positions, positions: &[(i32, i64)]) {
    for (p, o) in positions {
        match into.iter_mut().find(|(ip, _)| ip == p) {
            Some((_, io)) => *io = (*io).max(*o),
            None => into.push((*p, *o)),
        }
    }
}
