//! Aggregation: one set of DataFusion accumulators per group (a key, or a key and a window) in a
//! group store, updated record by record so that every input row emits its group's new row (ksqlDB's
//! EMIT CHANGES with caching off), per commit, or only closed windows' final rows (EMIT FINAL). How a
//! batch's rows reach their groups is one operator per kind ([`Aggregation`]): time windows (and no
//! window), sessions, a table's rows. The store keeps stream time, timers that close and evict
//! windows, and, when logged, the changes a changelog keeps and the restore from it (see [`persist`]).

mod index;
mod persist;
mod sessions;
mod table_rows;
mod time_windows;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{Int32Type, Int64Type, Schema};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;

use eddy_common::{Result, exec_err};
use eddy_sql::aggregate::AggregateSpec;
use eddy_sql::statement::WindowKind;

use crate::format::DecodeError;
use crate::format::window::Bounds;
use index::GroupIndex;

type DfResult<T> = datafusion::error::Result<T>;

fn df(e: impl std::fmt::Display) -> eddy_common::Error {
    exec_err!("{e}")
}

/// What the aggregation of one batch produced: rows in the aggregated schema (GROUP BY columns, window
/// bounds, aggregates), HAVING applied.
#[derive(Debug)]
pub struct Aggregated {
    pub batch: RecordBatch,
    /// Rows that delete their key (tombstones): a group that stopped passing HAVING, a merged session.
    pub deletes: BooleanArray,
    pub rowtime: Vec<i64>,
    /// Source partition of the input row behind each output row.
    pub partition: Vec<i32>,
    /// The window of each output row, for windowed aggregations.
    pub windows: Option<Vec<Bounds>>,
    /// Input records dropped because every window they fall in had closed (later than the grace period).
    pub late_records: usize,
}

/// How one kind of aggregation folds a batch's rows into the groups of an [`AggregateState`], one
/// operator per kind, each in its own file: a stream's rows into time windows (or one group per
/// key: a window of all time), into sessions, or a table's rows (each replacing its key's last).
trait Aggregation: std::fmt::Debug + Send + Sync {
    /// Folds `rows` into `state`, listing in `fold` what to emit.
    fn fold(&self, state: &mut AggregateState, rows: &BatchRows<'_>, fold: &mut Fold)
    -> Result<()>;
}

/// A batch's rows as the aggregations read them.
struct BatchRows<'a> {
    batch: &'a RecordBatch,
    /// Rows whose record had no value (a table's deletions).
    null_values: &'a BooleanArray,
    /// The GROUP BY values.
    groups: &'a [ArrayRef],
    /// The GROUP BY values as rows (`None` without GROUP BY: one group, whose key is empty).
    keys: Option<&'a datafusion::arrow::row::Rows>,
    /// Each aggregate function's arguments.
    args: &'a [Vec<ArrayRef>],
    rowtimes: &'a datafusion::arrow::array::Int64Array,
    partitions: &'a datafusion::arrow::array::Int32Array,
    offsets: &'a datafusion::arrow::array::Int64Array,
}

impl BatchRows<'_> {
    fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Row `i`'s event time, partition and offset.
    fn position(&self, i: usize) -> (i64, i32, i64) {
        (
            self.rowtimes.value(i),
            self.partitions.value(i),
            self.offsets.value(i),
        )
    }

    /// Row `i`'s group key (empty without GROUP BY).
    fn key(&self, i: usize) -> &[u8] {
        self.keys.map_or(&[], |k| k.row(i).data())
    }

    /// Whether row `i` has every GROUP BY value (a row with a NULL one is in no group).
    fn grouped(&self, i: usize) -> bool {
        self.groups.iter().all(|g| g.is_valid(i))
    }
}

/// What folding a batch produced.
#[derive(Default)]
struct Fold {
    outs: Vec<Out>,
    late_records: usize,
    /// Groups to free once the batch's rows are built (sessions merged away).
    to_free: Vec<usize>,
    /// Per-commit emission: (group, row) folded in per group after the batch's loop.
    pending: Vec<(usize, usize)>,
}

/// The state of one aggregating query.
#[derive(Debug)]
pub struct AggregateState {
    spec: Arc<AggregateSpec>,
    /// How its kind folds rows in.
    operator: &'static dyn Aggregation,
    /// Emit only the final row of each window, when the window closes.
    emit_final: bool,
    /// Over a table: the input batch columns of its key, whose old row is retracted on every change.
    table_keys: Option<Vec<usize>>,
    converter: Option<RowConverter>,
    table_converter: Option<RowConverter>,
    /// Groups by key (with the window start appended for time windows).
    index: GroupIndex,
    /// Windowed aggregations: the groups (windows) of each key. Sessions are found only through it;
    /// time windows also through `index`, this serves pull queries that pin the key.
    windows: HashMap<Box<[u8]>, Vec<usize>>,
    groups: Vec<Option<Group>>,
    free: Vec<usize>,
    /// Groups created so far (see [`Group::generation`]).
    generations: u64,
    /// Over a table: each key's current row, as the group it is in and its aggregate arguments.
    table_rows: HashMap<Box<[u8]>, TableRow>,
    /// The largest event time seen.
    stream_time: i64,
    /// Windows to close or evict, by the stream time at which that happens.
    timers: BTreeMap<i64, Vec<Timer>>,
    /// Per-commit emission: rows are folded in batch by batch and [`AggregateState::flush`] emits
    /// the groups that changed, once each. Otherwise every input row emits its group's row.
    per_commit: bool,
    /// Groups changed since the last flush (per-commit emission).
    dirty: Vec<usize>,
    /// Changelog bookkeeping, when the state is persisted (see [`AggregateState::log_changes`]).
    log: Option<Box<persist::StateLog>>,
    /// Failures of aggregate functions (rows they left out) and of argument expressions (which gave
    /// NULL), since [`AggregateState::take_errors`].
    errors: Vec<String>,
    /// Input records left out because their time cannot be placed in a window, since
    /// [`AggregateState::take_skipped`].
    skipped: Vec<DecodeError>,
}

/// A table row's group and the arguments it gave each aggregate function.
type TableRow = (usize, Vec<Vec<ScalarValue>>);

#[derive(Debug)]
struct Group {
    /// The GROUP BY values, as a row of `converter`.
    key: Box<[u8]>,
    window: Option<Bounds>,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Whether the group's last row is in the output table (it passed HAVING), so that failing HAVING
    /// now deletes it.
    emitted: bool,
    /// Tells a reused slot from the group a timer was set for.
    generation: u64,
    /// Event time of the last record folded in (the time of an EMIT FINAL row).
    last_rowtime: i64,
    /// Source partition of the last record folded in.
    partition: i32,
    /// Changed since its row was last emitted (per-commit emission).
    dirty: bool,
    /// Changed since its changelog record was last written.
    logged: bool,
    /// Its window closed and its final row was emitted (EMIT FINAL).
    closed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    group: usize,
    generation: u64,
    /// The window end the timer was set for (a session may have grown since).
    end: i64,
    close: bool,
}

/// One output row before HAVING: a group's values at a point in time.
struct Out {
    group: usize,
    window: Option<Bounds>,
    values: Vec<ScalarValue>,
    /// A tombstone for the group's key and window (a session replaced by a merge).
    delete: bool,
    rowtime: i64,
    /// Source partition of the input behind the row.
    partition: i32,
}

impl AggregateState {
    /// State for `spec`; `table_keys` (input columns of the source's key) when aggregating a table.
    pub fn new(spec: Arc<AggregateSpec>, table_keys: Option<Vec<usize>>, emit_final: bool) -> Self {
        let operator: &'static dyn Aggregation = match (&table_keys, spec.window.as_ref()) {
            (Some(_), _) => &table_rows::TableRows,
            (None, Some(w)) if matches!(w.kind, WindowKind::Session { .. }) => &sessions::Sessions,
            (None, _) => &time_windows::TimeWindows,
        };
        AggregateState {
            operator,
            spec,
            emit_final,
            table_keys,
            converter: None,
            table_converter: None,
            index: GroupIndex::default(),
            windows: HashMap::new(),
            groups: Vec::new(),
            free: Vec::new(),
            generations: 0,
            table_rows: HashMap::new(),
            stream_time: i64::MIN,
            timers: BTreeMap::new(),
            per_commit: false,
            dirty: Vec::new(),
            log: None,
            errors: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Switches to per-commit emission: `apply` folds rows in (emitting only deletes and, with EMIT
    /// FINAL, closed windows) and `flush` emits each changed group's row once.
    pub fn per_commit(mut self) -> Self {
        self.per_commit = true;
        self
    }

    /// The current row of every group changed since the last flush (per-commit emission).
    pub fn flush(&mut self) -> Result<Aggregated> {
        let mut outs = Vec::new();
        for group in std::mem::take(&mut self.dirty) {
            let Some(g) = self.groups[group].as_mut() else {
                continue;
            };
            if !g.dirty {
                continue;
            }
            g.dirty = false;
            let rowtime = g.last_rowtime;
            outs.push(self.out(group, false, rowtime)?);
        }
        self.finish(outs, 0)
    }

    /// Whether changed groups are emitted once per flush (rather than per input row).
    pub fn is_per_commit(&self) -> bool {
        self.per_commit
    }

    /// Whether state changes are kept for a changelog.
    pub fn is_logged(&self) -> bool {
        self.log.is_some()
    }

    /// The current row of every group in the output table (passing HAVING), for pull queries; emits
    /// nothing and changes nothing.
    pub fn snapshot(&mut self) -> Result<Aggregated> {
        let live: Vec<usize> = (0..self.groups.len())
            .filter(|g| self.groups[*g].is_some())
            .collect();
        let mut outs = Vec::with_capacity(live.len());
        for group in live {
            let rowtime = self.get(group).last_rowtime;
            outs.push(self.out(group, false, rowtime)?);
        }
        self.build(outs, 0, Having::Filter)
    }

    /// The current rows (passing HAVING) of the groups with these GROUP BY values (one row of values
    /// per group, in GROUP BY order), for pull queries that look keys up: every window of a windowed
    /// key; `None` when there is no such group. Values that cannot be the key's type find nothing.
    pub fn snapshot_keys(&mut self, keys: &[Vec<ScalarValue>]) -> Result<Option<Aggregated>> {
        self.ensure_key_converter()?;
        let spec = self.spec.clone();
        let width = spec.group_exprs.len();
        let rows: Vec<Vec<ScalarValue>> = keys
            .iter()
            .filter_map(|row| {
                (row.len() == width)
                    .then(|| {
                        row.iter()
                            .enumerate()
                            .map(|(i, v)| v.cast_to(spec.schema.field(i).data_type()).ok())
                            .collect::<Option<Vec<_>>>()
                    })
                    .flatten()
            })
            .collect();
        let mut outs = Vec::new();
        if !rows.is_empty() && width > 0 {
            let columns: Vec<ArrayRef> = (0..width)
                .map(|i| ScalarValue::iter_to_array(rows.iter().map(|r| r[i].clone())))
                .collect::<DfResult<_>>()
                .map_err(df)?;
            let converter = self.converter.as_ref().expect("made above");
            let converted = converter.convert_columns(&columns).map_err(df)?;
            let mut found: Vec<usize> = Vec::new();
            for i in 0..rows.len() {
                let key = converted.row(i).data();
                if spec.window.is_some() {
                    found.extend(self.windows.get(key).into_iter().flatten());
                } else {
                    found.extend(self.index.get(&self.groups, key, None));
                }
            }
            if found.is_empty() {
                return Ok(None);
            }
            found.sort_unstable();
            found.dedup();
            for group in found {
                let rowtime = self.get(group).last_rowtime;
                outs.push(self.out(group, false, rowtime)?);
            }
        }
        if outs.is_empty() {
            return Ok(None);
        }
        self.build(outs, 0, Having::Filter).map(Some)
    }

    /// Whether the groups are windows of their keys (rows carry their window).
    pub fn windowed(&self) -> bool {
        self.spec.window.is_some()
    }

    /// Folds the rows of `batch` (the query's filtered input; `null_values` marks rows without a value,
    /// which delete their key from a table and are skipped on a stream) into their groups.
    pub fn apply(&mut self, batch: &RecordBatch, null_values: &BooleanArray) -> Result<Aggregated> {
        let spec = self.spec.clone();
        let schema = batch.schema();
        let mut errors = Vec::new();
        let mut evaluate = |e: &Arc<dyn PhysicalExpr>| -> Result<ArrayRef> {
            let data_type = e.data_type(&schema).map_err(df)?;
            crate::evaluate::evaluate(e, batch, &data_type, &mut errors)
        };
        let groups: Vec<ArrayRef> = spec
            .group_exprs
            .iter()
            .map(&mut evaluate)
            .collect::<Result<_>>()?;
        let args: Vec<Vec<ArrayRef>> = spec
            .aggregates
            .iter()
            .map(|a| a.expressions().iter().map(&mut evaluate).collect())
            .collect::<Result<_>>()?;
        self.errors.append(&mut errors);
        // Without GROUP BY every row is in the one group, whose key is empty.
        let keys = match groups.is_empty() {
            true => None,
            false => {
                let converter = converter_for(&mut self.converter, &groups)?;
                Some(converter.convert_columns(&groups).map_err(df)?)
            }
        };
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        let rows = BatchRows {
            batch,
            null_values,
            groups: &groups,
            keys: keys.as_ref(),
            args: &args,
            rowtimes: batch.column(0).as_primitive::<Int64Type>(),
            partitions,
            offsets,
        };
        let mut fold = Fold::default();
        let operator = self.operator;
        operator.fold(self, &rows, &mut fold)?;
        self.fold_pending(&mut fold.pending, &args)?;
        self.recovered_to(partitions, offsets);
        let result = self.finish(fold.outs, fold.late_records);
        for group in fold.to_free {
            self.release(group);
        }
        result
    }

    /// After a row of a stream: folds what waits in and fires the timers stream time has reached.
    fn after_row(&mut self, fold: &mut Fold, args: &[Vec<ArrayRef>]) -> Result<()> {
        if self
            .timers
            .first_key_value()
            .is_some_and(|(t, _)| *t <= self.stream_time)
        {
            self.fold_pending(&mut fold.pending, args)?;
            self.fire_timers(&mut fold.outs, &mut fold.to_free)?;
        }
        Ok(())
    }

    /// Records when and from where a group last got a row.
    fn note(&mut self, group: usize, rowtime: i64, partition: i32) {
        let g = self.get(group);
        g.last_rowtime = g.last_rowtime.max(rowtime);
        g.partition = partition;
        self.log_group(group);
    }

    /// A group's value changed: per record its row is emitted now; per commit it is marked for the
    /// next flush.
    fn changed(&mut self, group: usize, rowtime: i64, outs: &mut Vec<Out>) -> Result<()> {
        if !self.per_commit {
            outs.push(self.out(group, false, rowtime)?);
            return Ok(());
        }
        let g = self.get(group);
        if !g.dirty {
            g.dirty = true;
            self.dirty.push(group);
        }
        Ok(())
    }

    /// Folds the rows waiting for their groups in: one accumulator update per group with all of its
    /// rows, in input order. The argument columns are taken once in group order, so that each
    /// group reads its rows as one slice (no copy per group).
    fn fold_pending(
        &mut self,
        pending: &mut Vec<(usize, usize)>,
        args: &[Vec<ArrayRef>],
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        pending.sort_unstable();
        let order = UInt32Array::from_iter_values(pending.iter().map(|(_, row)| *row as u32));
        let taken: Vec<Vec<ArrayRef>> = args
            .iter()
            .map(|columns| {
                columns
                    .iter()
                    .map(|c| take(c.as_ref(), &order, None))
                    .collect::<std::result::Result<_, _>>()
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(df)?;
        let mut at = 0;
        while at < pending.len() {
            let (group, start) = (pending[at].0, at);
            while at < pending.len() && pending[at].0 == group {
                at += 1;
            }
            self.update(group, &taken, start, at - start);
        }
        pending.clear();
        Ok(())
    }

    /// The group of a key (and window), created when new.
    fn group(&mut self, key: &[u8], window: Option<Bounds>) -> Result<usize> {
        if let Some(group) = self.index.get(&self.groups, key, window.map(|w| w.start)) {
            return Ok(group);
        }
        let group = self.create(key, window)?;
        self.index.insert(&self.groups, group);
        if let (Some(w), Some(spec)) = (window, self.spec.window.clone()) {
            self.add_window(group);
            self.set_timers(group, w, spec.grace_ms(), spec.retention_ms());
        }
        Ok(group)
    }

    /// Lists a time window's group among its key's windows.
    fn add_window(&mut self, group: usize) {
        let key = &self.groups[group].as_ref().expect("live group").key;
        match self.windows.get_mut(key) {
            Some(list) => list.push(group),
            None => {
                let key = key.clone();
                self.windows.insert(key, vec![group]);
            }
        }
    }

    /// A fresh set of accumulators, one per aggregate function.
    fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.spec
            .aggregates
            .iter()
            .map(|a| {
                // Over a table, values are retracted as well as added.
                if self.table_keys.is_some() {
                    a.create_sliding_accumulator()
                } else {
                    a.create_accumulator()
                }
            })
            .collect::<DfResult<Vec<_>>>()
            .map_err(df)
    }

    fn create(&mut self, key: &[u8], window: Option<Bounds>) -> Result<usize> {
        let accumulators = self.accumulators()?;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.groups.push(None);
            self.groups.len() - 1
        });
        self.generations += 1;
        self.groups[slot] = Some(Group {
            key: key.into(),
            window,
            accumulators,
            emitted: false,
            generation: self.generations,
            last_rowtime: i64::MIN,
            partition: 0,
            dirty: false,
            logged: false,
            closed: false,
        });
        Ok(slot)
    }

    fn get(&mut self, group: usize) -> &mut Group {
        self.groups[group].as_mut().expect("live group")
    }

    fn set_timers(&mut self, group: usize, window: Bounds, grace: i64, retention: i64) {
        let generation = self.get(group).generation;
        let timer = |close| Timer {
            group,
            generation,
            end: window.end,
            close,
        };
        if self.emit_final && !self.get(group).closed {
            self.timers
                .entry(window.end.saturating_add(grace))
                .or_default()
                .push(timer(true));
        }
        self.timers
            .entry(self.evicted_at(window, grace, retention))
            .or_default()
            .push(timer(false));
    }

    /// The stream time at which a window is forgotten.
    fn evicted_at(&self, window: Bounds, grace: i64, retention: i64) -> i64 {
        match self.spec.window.as_ref().map(|w| &w.kind) {
            Some(WindowKind::Session { gap_ms }) => {
                window.end.saturating_add(grace.saturating_add(*gap_ms))
            }
            _ => window.start.saturating_add(retention),
        }
    }

    /// Emits the final rows of windows that closed (EMIT FINAL) and forgets windows past retention.
    fn fire_timers(&mut self, outs: &mut Vec<Out>, to_free: &mut Vec<usize>) -> Result<()> {
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() > self.stream_time {
                break;
            }
            let timers = entry.remove();
            for t in timers {
                let live = self.groups[t.group].as_ref().is_some_and(|g| {
                    g.generation == t.generation && g.window.map(|w| w.end) == Some(t.end)
                });
                if !live || to_free.contains(&t.group) {
                    continue;
                }
                if t.close {
                    let rowtime = self.get(t.group).last_rowtime;
                    outs.push(self.out(t.group, false, rowtime)?);
                    self.get(t.group).closed = true;
                    self.log_group(t.group);
                } else {
                    self.forget(t.group);
                    to_free.push(t.group);
                }
            }
        }
        Ok(())
    }

    /// Folds `len` rows of the argument columns, from `offset`, into a group.
    fn update(&mut self, group: usize, args: &[Vec<ArrayRef>], offset: usize, len: usize) {
        let mut errors = Vec::new();
        let group = self.get(group);
        for (acc, columns) in group.accumulators.iter_mut().zip(args) {
            let rows: Vec<ArrayRef> = columns.iter().map(|c| c.slice(offset, len)).collect();
            // A function that fails leaves the failing rows out (see eddy_udf::Accumulator): the
            // failure is counted and the query goes on.
            if let Err(e) = acc.update_batch(&rows) {
                errors.push(e.to_string());
            }
        }
        self.errors.append(&mut errors);
    }

    /// Takes a table row's old arguments out of its group.
    fn retract(&mut self, group: usize, args: &[Vec<ScalarValue>]) -> Result<()> {
        let mut errors = Vec::new();
        for (acc, values) in self.get(group).accumulators.iter_mut().zip(args) {
            if let Err(e) = acc.retract_batch(&one_row(values)?) {
                errors.push(e.to_string());
            }
        }
        self.errors.append(&mut errors);
        Ok(())
    }

    /// The records left out since the last call (counted as skipped records in the query's status).
    pub fn take_skipped(&mut self) -> Vec<DecodeError> {
        std::mem::take(&mut self.skipped)
    }

    /// The failures since the last call (counted as expression errors in the query's status).
    pub fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    fn out(&mut self, group: usize, delete: bool, rowtime: i64) -> Result<Out> {
        let g = self.get(group);
        let partition = g.partition;
        let values = g
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate())
            .collect::<DfResult<_>>()
            .map_err(df)?;
        Ok(Out {
            group,
            window: g.window,
            values,
            delete,
            rowtime,
            partition,
        })
    }

    /// Removes a group from the indexes (its slot is released after the batch's rows are built).
    fn forget(&mut self, group: usize) {
        let Some(g) = self.groups[group].as_ref() else {
            return;
        };
        if let Some(w) = &self.spec.window {
            if let Some(list) = self.windows.get_mut(&g.key) {
                list.retain(|s| *s != group);
                if list.is_empty() {
                    self.windows.remove(&g.key);
                }
            }
            if matches!(w.kind, WindowKind::Session { .. }) {
                return;
            }
        }
        self.index.remove(&self.groups, group);
    }

    fn release(&mut self, group: usize) {
        if self.groups[group].take().is_some() {
            self.free.push(group);
            self.forget_covered(group);
        }
    }

    /// Builds the output rows and applies HAVING: a row that fails it deletes its group's key, if the
    /// group's previous row was in the table, and is left out otherwise.
    fn finish(&mut self, outs: Vec<Out>, late_records: usize) -> Result<Aggregated> {
        self.build(outs, late_records, Having::Emit)
    }

    fn build(&mut self, outs: Vec<Out>, late_records: usize, having: Having) -> Result<Aggregated> {
        let spec = self.spec.clone();
        self.ensure_key_converter()?;
        let mut columns: Vec<ArrayRef> = if spec.group_exprs.is_empty() {
            Vec::new()
        } else {
            let converter = self.converter.as_ref().expect("made above");
            let parser = converter.parser();
            let keys = outs
                .iter()
                .map(|o| parser.parse(&self.groups[o.group].as_ref().expect("live group").key));
            converter.convert_rows(keys).map_err(df)?
        };
        let windowed = spec.window.is_some();
        if windowed {
            let bound = |f: fn(&Bounds) -> i64| -> ArrayRef {
                Arc::new(Int64Array::from_iter_values(
                    outs.iter().map(|o| f(&o.window.expect("windowed group"))),
                ))
            };
            columns.push(bound(|w| w.start));
            columns.push(bound(|w| w.end));
        }
        for j in 0..spec.aggregates.len() {
            let field = spec.schema.field(columns.len());
            let array = if outs.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(outs.iter().map(|o| o.values[j].clone())).map_err(df)?
            };
            columns.push(array);
        }
        let schema = Arc::new(Schema::new(
            spec.schema
                .fields()
                .iter()
                .zip(&columns)
                .map(|(f, c)| {
                    f.as_ref()
                        .clone()
                        .with_data_type(c.data_type().clone())
                        .with_nullable(true)
                })
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema, columns).map_err(|e| exec_err!("{e}"))?;
        let passes: Vec<bool> = match &spec.having {
            Some(h) => {
                // A HAVING that fails on a row is NULL for it: the row does not pass.
                let pass = crate::evaluate::evaluate(
                    h,
                    &batch,
                    &datafusion::arrow::datatypes::DataType::Boolean,
                    &mut self.errors,
                )?;
                let pass = pass.as_boolean();
                (0..pass.len())
                    .map(|i| pass.is_valid(i) && pass.value(i))
                    .collect()
            }
            None => vec![true; outs.len()],
        };
        let mut keep = Vec::with_capacity(outs.len());
        let mut deletes = Vec::with_capacity(outs.len());
        for (o, pass) in outs.iter().zip(passes) {
            let pass = pass && !o.delete;
            if having == Having::Filter {
                keep.push(pass);
                if pass {
                    deletes.push(false);
                }
                continue;
            }
            let group = self.groups[o.group].as_mut().expect("live group");
            let emit = pass || group.emitted;
            group.emitted = pass;
            keep.push(emit);
            if emit {
                deletes.push(!pass);
            }
        }
        let keep = BooleanArray::from(keep);
        let batch = datafusion::arrow::compute::filter_record_batch(&batch, &keep)
            .map_err(|e| exec_err!("{e}"))?;
        let kept = outs
            .iter()
            .zip(keep.values().iter())
            .filter(|(_, k)| *k)
            .map(|(o, _)| o);
        let (mut rowtime, mut partition, mut windows) = (Vec::new(), Vec::new(), Vec::new());
        for o in kept {
            rowtime.push(o.rowtime);
            partition.push(o.partition);
            windows.extend(o.window);
        }
        Ok(Aggregated {
            batch,
            deletes: BooleanArray::from(deletes),
            rowtime,
            partition,
            windows: windowed.then_some(windows),
            late_records,
        })
    }
}

/// What HAVING does to a row that fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Having {
    /// Emit a delete for a group whose previous row was in the table.
    Emit,
    /// Leave the row out (a snapshot of the table).
    Filter,
}

/// Values as the columns of a one-row batch (an accumulator's state, a table row's arguments).
fn one_row(values: &[ScalarValue]) -> Result<Vec<ArrayRef>> {
    values
        .iter()
        .map(|v| v.to_array())
        .collect::<DfResult<Vec<_>>>()
        .map_err(df)
}

/// The row converter of `columns`' types, made on first use.
fn converter_for<'a>(
    slot: &'a mut Option<RowConverter>,
    columns: &[ArrayRef],
) -> Result<&'a RowConverter> {
    if slot.is_none() {
        let fields = columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        *slot = Some(RowConverter::new(fields).map_err(|e| exec_err!("{e}"))?);
    }
    Ok(slot.as_ref().expect("set above"))
}
