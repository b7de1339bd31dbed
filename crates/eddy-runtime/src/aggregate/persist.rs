//! Writing an aggregation's state to its changelog and restoring it: which groups and table rows
//! changed since the last write, their records (see [`crate::changelog`]), and, after a restore, which
//! replayed input the restored state already includes.
//!
//! Windows that pass their retention are not deleted from the changelog (a tombstone written in a
//! write that a crash cuts short would let replay rebuild the window from part of its input); the
//! changelog topic's retention removes them, as Kafka Streams' window stores do, and a restore
//! evicts them again.

use std::collections::{HashMap, HashSet};

use datafusion::arrow::array::{Array, ArrayRef, Int32Array, Int64Array};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;

use eddy_common::{Result, internal_err};
use eddy_sql::statement::WindowKind;

use super::{AggregateState, DfResult, df};
use crate::changelog::{
    Checkpoint, GroupRecord, Positions, RowRecord, SinkMark, StateChange, StateKey, covers,
};
use crate::format::window::Bounds;

/// What a logged aggregation tracks for its changelog.
#[derive(Debug)]
pub(super) struct StateLog {
    /// Groups changed since the last write (a group's `logged` flag says whether it is listed).
    groups: Vec<usize>,
    /// Keys of records to delete: groups that ended.
    ended: Vec<Vec<u8>>,
    /// Table rows (by source key) changed since the last write.
    rows: HashSet<Box<[u8]>>,
    /// The accumulators' states of a group, as one row.
    states: RowConverter,
    /// How many state columns each accumulator has.
    state_widths: Vec<usize>,
    /// A table row's aggregate arguments, as one row.
    args: Option<RowConverter>,
    /// After a restore: where each restored group's and table row's record was written; replayed input
    /// before those positions is already in them.
    covered_groups: HashMap<usize, Positions>,
    covered_rows: HashMap<Box<[u8]>, Positions>,
    /// Replay is over once input reaches these positions.
    recover_until: Positions,
}

impl AggregateState {
    /// Tracks changes so that [`AggregateState::changes`] can write them to a changelog.
    pub fn log_changes(&mut self) -> Result<()> {
        let fresh = self.accumulators()?;
        let mut fields = Vec::new();
        let mut state_widths = Vec::new();
        for mut acc in fresh {
            let state = acc.state().map_err(df)?;
            state_widths.push(state.len());
            fields.extend(state.iter().map(|v| SortField::new(v.data_type())));
        }
        let states = RowConverter::new(fields).map_err(|e| {
            internal_err!("the aggregation's state cannot be written to a changelog: {e}")
        })?;
        let args = match self.table_keys {
            Some(_) => Some(
                RowConverter::new(
                    self.spec
                        .aggregates
                        .iter()
                        .flat_map(|a| a.expressions())
                        .map(|e| e.data_type(&self.spec.input_schema).map(SortField::new))
                        .collect::<DfResult<Vec<_>>>()
                        .map_err(df)?,
                )
                .map_err(df)?,
            ),
            None => None,
        };
        self.log = Some(Box::new(StateLog {
            groups: Vec::new(),
            ended: Vec::new(),
            rows: HashSet::new(),
            states,
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
            let rows = log.states.convert_columns(&columns).map_err(df)?;
            for (i, group) in groups.into_iter().enumerate() {
                let g = self.groups[group].as_ref().expect("live group");
                let record = GroupRecord {
                    positions: positions.to_vec(),
                    stream_time: self.stream_time,
                    last_rowtime: g.last_rowtime,
                    partition: g.partition,
                    emitted: g.emitted,
                    closed: g.closed,
                    states: rows.row(i).as_ref().to_vec(),
                };
                out.push(StateChange {
                    key: StateKey::Group {
                        key: &g.key,
                        window: g.window,
                    }
                    .encode(),
                    value: Some(record.encode()),
                });
            }
        }
        out.extend(
            log.ended
                .drain(..)
                .map(|key| StateChange { key, value: None }),
        );
        for source_key in std::mem::take(&mut log.rows) {
            let key = StateKey::Row(&source_key).encode();
            let value = match self.table_rows.get(&source_key) {
                Some((group, args)) => {
                    let converter = log.args.as_ref().expect("a table aggregation");
                    let columns = args
                        .iter()
                        .flatten()
                        .map(|v| v.to_array().map_err(df))
                        .collect::<Result<Vec<_>>>()?;
                    let row = converter.convert_columns(&columns).map_err(df)?;
                    let g = self.groups[*group].as_ref().expect("live group");
                    Some(
                        RowRecord {
                            positions: positions.to_vec(),
                            group: g.key.to_vec(),
                            args: row.row(0).as_ref().to_vec(),
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
        let mut groups = Vec::new();
        let mut rows = Vec::new();
        let mut checkpoint = None;
        for (key, value) in &latest {
            let Some(value) = value else { continue };
            match StateKey::decode(key, windowed)? {
                StateKey::Checkpoint => checkpoint = Some(Checkpoint::decode(value)?),
                StateKey::Group { key: k, window } => {
                    groups.push((k, window, GroupRecord::decode(value)?, key))
                }
                StateKey::Row(source) => rows.push((source, RowRecord::decode(value)?)),
            }
        }
        if matches!(
            self.spec.window.as_ref().map(|w| &w.kind),
            Some(WindowKind::Session { .. })
        ) {
            // A crash between writing a merged session and deleting the sessions it replaced leaves
            // both: a session inside another of its key is such a leftover.
            let all: Vec<(&[u8], Bounds)> = groups
                .iter()
                .map(|(k, w, _, _)| (*k, w.expect("session")))
                .collect();
            groups.retain(|(k, w, _, record_key)| {
                let w = w.expect("session");
                let inside = all.iter().any(|(other_key, o)| {
                    other_key == k && *o != w && o.start <= w.start && w.end <= o.end
                });
                if inside {
                    log.ended.push(record_key.to_vec());
                }
                !inside
            });
        }
        let Some(checkpoint) = checkpoint else {
            // Nothing was written completely: there is no state yet.
            return Ok(None);
        };
        self.stream_time = checkpoint.stream_time;
        // Windows evicted before the checkpoint stay evicted (their records may be older than their
        // last changes, which were not written once they were gone).
        if let Some(spec) = &self.spec.window {
            let (grace, retention) = (spec.grace_ms(), spec.retention_ms());
            groups.retain(|(_, w, _, _)| {
                w.is_some_and(|w| self.evicted_at(w, grace, retention) > self.stream_time)
            });
        }
        self.ensure_key_converter()?;
        let parser = log.states.parser();
        let states = log
            .states
            .convert_rows(groups.iter().map(|g| parser.parse(&g.2.states)))
            .map_err(df)?;
        for (i, (key, window, record, _)) in groups.into_iter().enumerate() {
            let group = self.create(key, window)?;
            let mut column = 0;
            let g = self.get(group);
            for (acc, width) in g.accumulators.iter_mut().zip(&log.state_widths) {
                let state: Vec<ArrayRef> = states[column..column + width]
                    .iter()
                    .map(|c| c.slice(i, 1))
                    .collect();
                acc.merge_batch(&state).map_err(df)?;
                column += width;
            }
            g.last_rowtime = record.last_rowtime;
            g.partition = record.partition;
            g.emitted = record.emitted;
            g.closed = record.closed;
            self.index_restored(group, window);
            merge_positions(&mut log.recover_until, &record.positions);
            log.covered_groups.insert(group, record.positions);
        }
        if let Some(converter) = &log.args {
            let parser = converter.parser();
            let args = converter
                .convert_rows(rows.iter().map(|r| parser.parse(&r.1.args)))
                .map_err(df)?;
            for (i, (source, record)) in rows.into_iter().enumerate() {
                let Some(group) = self.index.get(&self.groups, &record.group, None) else {
                    return Err(internal_err!(
                        "the changelog holds a table row whose group it does not hold"
                    ));
                };
                let mut column = 0;
                let mut row_args = Vec::new();
                for a in &self.spec.aggregates {
                    let n = a.expressions().len();
                    row_args.push(
                        args[column..column + n]
                            .iter()
                            .map(|c| ScalarValue::try_from_array(c, i))
                            .collect::<DfResult<Vec<_>>>()
                            .map_err(df)?,
                    );
                    column += n;
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
        log.ended.push(
            StateKey::Group {
                key: &g.key,
                window: g.window,
            }
            .encode(),
        );
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

/// Raises `into` to at least `positions`, partition by partition.
fn merge_positions(into: &mut Positions, positions: &[(i32, i64)]) {
    for (p, o) in positions {
        match into.iter_mut().find(|(ip, _)| ip == p) {
            Some((_, io)) => *io = (*io).max(*o),
            None => into.push((*p, *o)),
        }
    }
}
