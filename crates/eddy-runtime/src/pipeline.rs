//! A stateless query pipeline: decoded batch → filter → projection → encoded records, all over whole
//! Arrow batches.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::kernels::boolean::not;
use datafusion::arrow::compute::{and_not, filter_record_batch, nullif, prep_null_mask_filter};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;

use eddy_common::{Result, exec_err};
use eddy_sql::catalog::{Format, FormatKind, PSEUDO_COLUMNS, Source};
use eddy_sql::java::{chrono_format, parse_millis};
use eddy_sql::planner::QueryPlan;
use eddy_sql::statement::SourceKind;
use eddy_sql::window::WindowType;

use crate::aggregate::{AggregateState, Aggregated};
use crate::changelog::{Checkpoint, SinkMark, StateChange, input_position};
use crate::evaluate::evaluate;
use crate::format::window::{Bounds, append_window};
use crate::format::{DecodeError, DecodedBatch, SinkEncoder, SourceDecoder};
use crate::join::{JoinInput, JoinedBatch, SidePlacement};
use crate::joined_rows::JoinedRows;
use crate::partitioner::partition_for;
use crate::placement::{Placement, offset_at, partition_at};
use crate::record::{Record, RecordRef};
use crate::registry::SchemaRegistry;

/// The result of running one batch through a pipeline.
#[derive(Debug, Clone)]
pub struct ProcessedBatch {
    /// Output rows in the query's output schema.
    pub batch: RecordBatch,
    /// Event time of every output row (inherited from its input row).
    pub rowtime: Vec<i64>,
    /// Source partition of every output row.
    pub partition: Vec<i32>,
    /// Source offset of every output row (-1 for an aggregation's rows, which many records made).
    pub offset: Vec<i64>,
    /// Rows that carry a tombstone (their input record had a null value).
    pub null_values: BooleanArray,
    /// Rows whose key passes through from an input record without a key (none under PARTITION BY).
    pub null_keys: Option<BooleanArray>,
    /// The window of every output row, when the output's keys are windowed.
    pub windows: Option<Vec<Bounds>>,
    /// Input records a windowed aggregation dropped because their windows had closed.
    pub late_records: usize,
    /// Input records that were skipped because they could not be decoded.
    pub decode_errors: Vec<DecodeError>,
    /// Expression failures (the failing expression yields NULL for that row, as in ksqlDB).
    pub expression_errors: Vec<String>,
}

impl ProcessedBatch {
    /// No rows, of `schema` (with their windows when `windowed`).
    pub fn empty(schema: SchemaRef, windowed: bool) -> ProcessedBatch {
        ProcessedBatch {
            batch: RecordBatch::new_empty(schema),
            rowtime: Vec::new(),
            partition: Vec::new(),
            offset: Vec::new(),
            null_values: BooleanArray::from(Vec::<bool>::new()),
            null_keys: None,
            windows: windowed.then(Vec::new),
            late_records: 0,
            decode_errors: Vec::new(),
            expression_errors: Vec::new(),
        }
    }

    /// Whether the batch carries nothing: no rows, no late records, no errors.
    fn is_void(&self) -> bool {
        self.batch.num_rows() == 0
            && self.late_records == 0
            && self.decode_errors.is_empty()
            && self.expression_errors.is_empty()
    }

    /// The rows of several batches of the same schema, one after another.
    pub fn concat(mut parts: Vec<ProcessedBatch>) -> Result<ProcessedBatch> {
        // Parts that carry nothing add nothing (a lookup's shards mostly hold none of its keys).
        if parts.iter().any(|p| !p.is_void()) {
            parts.retain(|p| !p.is_void());
        } else {
            parts.truncate(1);
        }
        let mut parts = parts.into_iter();
        let Some(mut all) = parts.next() else {
            return Err(eddy_common::internal_err!("nothing to concatenate"));
        };
        for p in parts {
            let rows = all.batch.num_rows();
            let err = |e: datafusion::arrow::error::ArrowError| exec_err!("{e}");
            all.batch = datafusion::arrow::compute::concat_batches(
                &all.batch.schema(),
                [&all.batch, &p.batch],
            )
            .map_err(err)?;
            all.rowtime.extend(p.rowtime);
            all.partition.extend(p.partition);
            all.offset.extend(p.offset);
            all.null_values = concat_flags(&all.null_values, &p.null_values)?;
            all.null_keys = match (all.null_keys, p.null_keys) {
                (None, None) => None,
                (a, b) => Some(concat_flags(
                    &a.unwrap_or_else(|| BooleanArray::from(vec![false; rows])),
                    &b.unwrap_or_else(|| BooleanArray::from(vec![false; p.batch.num_rows()])),
                )?),
            };
            all.windows = match (all.windows, p.windows) {
                (Some(mut a), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                (a, _) => a,
            };
            all.late_records += p.late_records;
            all.decode_errors.extend(p.decode_errors);
            all.expression_errors.extend(p.expression_errors);
        }
        Ok(all)
    }
}

fn concat_flags(a: &BooleanArray, b: &BooleanArray) -> Result<BooleanArray> {
    let joined = datafusion::arrow::compute::concat(&[a, b]).map_err(|e| exec_err!("{e}"))?;
    Ok(joined.as_boolean().clone())
}

/// A planned query together with what reads its input: the source's decoder, or a join's sides.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub plan: QueryPlan,
    input: Input,
    output_schema: SchemaRef,
    /// The groups of an aggregating query.
    aggregate_state: Option<Arc<Mutex<AggregateState>>>,
    /// Runs only the query's joins before its split point, handing their rows on for its internal
    /// topic (see [`Pipeline::split`]).
    joins_only: Option<HandOn>,
}

/// Where a server splits a query into two tasks joined by an internal topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitPoint {
    /// Before join `n` (a number among the query's joins): the rows of the joins before it are
    /// repartitioned by its join expression.
    Join(usize),
    /// Before the aggregation over the joins' rows, which are repartitioned by their GROUP BY
    /// values.
    Aggregation,
}

/// How the joins of a split query place their rows in the internal topic.
#[derive(Debug, Clone)]
struct HandOn {
    partitions: i32,
    /// By the next join's value (`None`: by the GROUP BY values).
    by_join: Option<SidePlacement>,
}

/// The layout of what the joins of a split query output: their rows, encoded.
fn joined_rows_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "ROWS",
        DataType::Binary,
        true,
    )]))
}

/// Where a pipeline's input rows come from.
#[derive(Debug, Clone)]
enum Input {
    /// The records of the query's one source.
    Source(Box<SourceDecoder>),
    /// The rows a join makes of its two sides' records.
    Join(Arc<JoinInput>),
    /// The rows the query's joins made, read back from its internal topic.
    JoinedRows(JoinedRows),
}

impl Pipeline {
    /// Builds the pipeline of a plan; schema-registry formats find their schemas in `registry`.
    pub fn new(plan: QueryPlan, registry: &Arc<dyn SchemaRegistry>) -> Result<Self> {
        let used = used_columns(&plan);
        if let Some(join) = &plan.join {
            let input = Input::Join(Arc::new(JoinInput::new(join.clone(), registry, &used)?));
            return Ok(Pipeline {
                output_schema: output_schema(&plan),
                aggregate_state: aggregate_state(&plan, false),
                plan,
                input,
                joins_only: None,
            });
        }
        let mut decoder = SourceDecoder::new(&plan.source, registry)?;
        decoder.skip_unused(&used);
        Ok(Pipeline {
            output_schema: output_schema(&plan),
            aggregate_state: aggregate_state(&plan, false),
            plan,
            input: Input::Source(Box::new(decoder)),
            joins_only: None,
        })
    }

    /// Where a server splits this query in two, each part a task of its own joined to the other
    /// by an internal topic (see [`Pipeline::split`]); `None` for a query it runs whole.
    pub fn split_point(&self) -> Option<SplitPoint> {
        let Input::Join(join) = &self.input else {
            return None;
        };
        if let Some(n) = join.repartitioned_join() {
            return Some(SplitPoint::Join(n));
        }
        self.aggregate_state
            .is_some()
            .then_some(SplitPoint::Aggregation)
    }

    /// The query as two pipelines for a server to run apart, split at its [`SplitPoint`] (an
    /// aggregation's groups, or a later join's values, need not follow the partitions of the
    /// joins before): the joins before it, whose output is their rows, each record holding those
    /// one input record made that go to one partition of the internal topic `topic` (of
    /// `partitions`: where the GROUP BY values hash to, or the later join's value written as its
    /// right side's key), encoded for it (`joined_rows`) in an envelope naming that input record
    /// (its input and partition as a position id, `changelog::input_position`, and its offset),
    /// so that what reads them can leave out records written twice; and the rest of the query,
    /// reading those rows back from `topic`. Both start empty and list their state changes for
    /// changelogs.
    pub fn split(&self, partitions: i32, topic: &str) -> Result<Option<(Pipeline, Pipeline)>> {
        let (Input::Join(join), Some(join_plan)) = (&self.input, &self.plan.join) else {
            return Ok(None);
        };
        let rows_source = |source: &Source| {
            Arc::new(Source {
                topic: topic.to_string(),
                ..source.clone()
            })
        };
        let (joins, rest) = match self.split_point() {
            None => return Ok(None),
            Some(SplitPoint::Aggregation) => {
                let joins = Pipeline {
                    input: Input::Join(Arc::new(join.fresh())),
                    aggregate_state: None,
                    joins_only: Some(HandOn {
                        partitions,
                        by_join: None,
                    }),
                    output_schema: joined_rows_schema(),
                    plan: self.plan.clone(),
                };
                let mut plan = self.plan.clone();
                plan.join = None;
                plan.source = rows_source(&plan.source);
                let rest = Pipeline {
                    input: Input::JoinedRows(JoinedRows::new(join_plan.schema.clone())),
                    plan,
                    ..self.clone()
                };
                (joins, rest)
            }
            Some(SplitPoint::Join(n)) => {
                let stages = join_plan.stages();
                let earlier = stages
                    .get(n)
                    .and_then(|s| s.left.nested.clone())
                    .ok_or_else(|| exec_err!("no join {n} to split the query at"))?;
                let source = rows_source(&stages[n].left.source);
                let (before, placement, after) = join.split_at(n, source.clone())?;
                let mut plan = self.plan.clone();
                plan.join = Some(earlier);
                let joins = Pipeline {
                    input: Input::Join(Arc::new(before)),
                    aggregate_state: None,
                    joins_only: Some(HandOn {
                        partitions,
                        by_join: Some(placement),
                    }),
                    output_schema: joined_rows_schema(),
                    plan,
                };
                let mut plan = self.plan.clone();
                plan.join = Some(Arc::new(join_plan.from_stage(n, source)));
                let rest = Pipeline {
                    input: Input::Join(Arc::new(after)),
                    plan,
                    ..self.clone()
                };
                (joins, rest)
            }
        };
        Ok(Some((joins.logged()?, rest.fresh()?.logged()?)))
    }

    /// Whether the pipeline runs joins only and hands their rows on to the query's internal topic
    /// (the first part of [`Pipeline::split`]).
    pub fn hands_on_joined_rows(&self) -> bool {
        self.joins_only.is_some()
    }

    /// Whether query input `input` holds rows of the query's joins read back from its internal
    /// topic (see [`Pipeline::split`]), in envelopes.
    pub fn reads_joined_rows(&self, input: usize) -> bool {
        match &self.input {
            Input::JoinedRows(_) => input == 0,
            Input::Join(join) => join.reads_joined_rows(input),
            Input::Source(_) => false,
        }
    }

    /// Switches an aggregating pipeline to per-commit emission: `process` folds records in and
    /// [`Pipeline::flush`] emits each changed group once (ksqlDB's default, with its cache on).
    pub fn per_commit(mut self) -> Self {
        self.aggregate_state = aggregate_state(&self.plan, true);
        self
    }

    /// Keeps the state changes of an aggregation, or of a join that keeps state, for a changelog
    /// (see [`Pipeline::changes`]).
    pub fn logged(self) -> Result<Self> {
        // A query that has both runs split in a server (see `Pipeline::split`), each part logging
        // its own: the two kinds of state do not share one changelog.
        if let Some(state) = &self.aggregate_state {
            lock(state).log_changes()?;
        } else if let Input::Join(join) = &self.input
            && join.keeps_state()
        {
            join.log_changes();
        }
        Ok(self)
    }

    /// Whether the pipeline keeps state (it aggregates).
    pub fn is_stateful(&self) -> bool {
        self.aggregate_state.is_some()
    }

    /// Whether the pipeline keeps state that a changelog has to keep across restarts: it
    /// aggregates, or it joins streams (whose buffers its topics cannot give back).
    pub fn persists_state(&self) -> bool {
        self.is_stateful() || matches!(&self.input, Input::Join(join) if join.keeps_state())
    }

    /// A pipeline for the same query with empty state of the same kind (emission, logging): the
    /// state of one input partition when groups follow partitions.
    pub fn fresh(&self) -> Result<Pipeline> {
        let input = match &self.input {
            Input::Join(join) => Input::Join(Arc::new(join.fresh())),
            source => source.clone(),
        };
        let Some(state) = &self.aggregate_state else {
            return Ok(Pipeline {
                input,
                ..self.clone()
            });
        };
        let (per_commit, logged) = {
            let s = lock(state);
            (s.is_per_commit(), s.is_logged())
        };
        let fresh = Pipeline {
            aggregate_state: aggregate_state(&self.plan, per_commit),
            input,
            ..self.clone()
        };
        if logged { fresh.logged() } else { Ok(fresh) }
    }

    /// Whether every group of the aggregation lives in one input partition: it groups by exactly the
    /// source's key columns, which Kafka's partitioner placed (so each partition's state can be kept,
    /// and moved, on its own).
    pub fn groups_follow_partitions(&self) -> bool {
        let Some(spec) = &self.plan.aggregate else {
            return false;
        };
        let keys = self.plan.source.key_columns().count();
        keys > 0
            && spec.group_exprs.len() == keys
            && spec.group_exprs.iter().enumerate().all(|(i, e)| {
                let any: &dyn std::any::Any = e.as_ref();
                any.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                    .is_some_and(|c| c.index() == PSEUDO_COLUMNS + i)
            })
    }

    /// The changelog records of the state changed since the last call; `positions` are the input
    /// positions the state now includes (next offset per source partition), `sink` where an
    /// exactly-once output stands. A join that keeps no state writes its checkpoint alone.
    pub fn changes(
        &self,
        positions: &[(i32, i64)],
        sink: Option<&SinkMark>,
    ) -> Result<Vec<StateChange>> {
        match (&self.aggregate_state, &self.input) {
            (Some(state), _) => lock(state).changes(positions, sink),
            (None, Input::Join(join)) => join.changes(positions, sink),
            _ => Ok(Vec::new()),
        }
    }

    /// Restores the state from its changelog records; returns the checkpoint whose input positions
    /// to resume from (`None` without a complete write).
    pub fn restore(&self, records: Vec<StateChange>) -> Result<Option<Checkpoint>> {
        match (&self.aggregate_state, &self.input) {
            (Some(state), _) => lock(state).restore(records),
            (None, Input::Join(join)) => join.restore(records),
            _ => Ok(None),
        }
    }

    /// The source the pipeline reads.
    pub fn source(&self) -> &Arc<Source> {
        &self.plan.source
    }

    /// The schema of output batches.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// The sources whose records the pipeline reads: its source, or a join's sources in the order
    /// of the FROM clause (records of `inputs()[i]` go to [`Pipeline::process_input`] with `i`).
    pub fn inputs(&self) -> Vec<Arc<Source>> {
        match &self.input {
            Input::Source(_) | Input::JoinedRows(_) => vec![self.plan.source.clone()],
            Input::Join(join) => join.sources(),
        }
    }

    /// Decodes, filters and projects a slice of records of the query's source.
    pub fn process<R: RecordRef>(&self, records: &[R]) -> Result<ProcessedBatch> {
        self.process_input(0, records)
    }

    /// Decodes, filters and projects a slice of records of input `input` (see [`Pipeline::inputs`]);
    /// a join joins them with what it has seen of the other side first.
    pub fn process_input<R: RecordRef>(
        &self,
        input: usize,
        records: &[R],
    ) -> Result<ProcessedBatch> {
        match &self.input {
            Input::Source(decoder) => self.process_decoded(decoder.decode(records)?),
            Input::JoinedRows(rows) => self.process_decoded(rows.decode(records)?),
            Input::Join(join) => {
                let joined = join.process(input, records)?;
                if let Some(hand_on) = &self.joins_only {
                    return self.hand_on_joined(input, joined, hand_on);
                }
                let mut processed = self.process_decoded(joined.decoded)?;
                processed.late_records += joined.late_records;
                processed
                    .expression_errors
                    .splice(0..0, joined.expression_errors);
                Ok(processed)
            }
        }
    }

    /// The partition (of `partitions`) each record of input `input` goes to when the query reads
    /// that input through a repartition topic, in the order of `records`: a join side's by its
    /// join expression (see [`JoinInput::placements`]), an aggregation's by its GROUP BY values.
    pub fn placements<R: RecordRef>(
        &self,
        input: usize,
        records: &[R],
        partitions: i32,
    ) -> Result<Vec<i32>> {
        match &self.input {
            Input::Join(join) => join.placements(input, records, partitions),
            Input::Source(decoder) => self.group_partitions(decoder, records, partitions),
            // Read from the internal topic its joins placed them in.
            Input::JoinedRows(_) => Ok(vec![0; records.len()]),
        }
    }

    /// The output of the joins of a split query (see [`Pipeline::split`]): one record per input
    /// record and partition its rows go to, in the order of their first rows. A row whose next
    /// join value is NULL goes to partition 0, where that join leaves it out.
    fn hand_on_joined(
        &self,
        input: usize,
        joined: JoinedBatch,
        hand_on: &HandOn,
    ) -> Result<ProcessedBatch> {
        let decoded = joined.decoded;
        let batch = &decoded.batch;
        let mut expression_errors = joined.expression_errors;
        let partitions = hand_on.partitions;
        let targets: Vec<i32> = match &hand_on.by_join {
            Some(placement) => placement
                .partitions(batch, partitions)?
                .into_iter()
                .map(|p| p.unwrap_or(0))
                .collect(),
            None => {
                let mut targets = Vec::with_capacity(batch.num_rows());
                self.group_values(batch, &mut expression_errors, |_, bytes| {
                    targets.push(partition_for(bytes, partitions));
                })?;
                targets
            }
        };
        let times = batch.column(0).as_primitive::<Int64Type>();
        let origins = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        // (input record, partition) -> its rows, in the order of their first rows.
        let mut records: Vec<((i32, i64, i32), Vec<usize>)> = Vec::new();
        let mut at: HashMap<(i32, i64, i32), usize> = HashMap::new();
        for (row, target) in targets.iter().copied().enumerate() {
            // A stream's record without a value is not an event.
            if decoded.null_values.value(row) {
                continue;
            }
            let origin = (origins.value(row), offsets.value(row), target);
            let n = *at.entry(origin).or_insert_with(|| {
                records.push((origin, Vec::new()));
                records.len() - 1
            });
            records[n].1.push(row);
        }
        let mut values = Vec::with_capacity(records.len());
        let (mut rowtime, mut partition) = (Vec::new(), Vec::new());
        for ((origin, offset, target), rows) in records {
            let payload = crate::joined_rows::encode(batch.columns(), &rows)?;
            let position = input_position(input, origin);
            values.push(crate::envelope::wrap(
                None,
                Some(&payload),
                position,
                offset,
            ));
            rowtime.push(rows.iter().map(|r| times.value(*r)).max().unwrap_or(0));
            partition.push(target);
        }
        let n = values.len();
        let out = RecordBatch::try_new(
            self.output_schema.clone(),
            vec![Arc::new(BinaryArray::from_iter_values(values)) as ArrayRef],
        )
        .map_err(|e| exec_err!("{e}"))?;
        Ok(ProcessedBatch {
            batch: out,
            rowtime,
            partition,
            offset: vec![-1; n],
            null_values: BooleanArray::from(vec![false; n]),
            null_keys: None,
            windows: None,
            late_records: joined.late_records,
            decode_errors: decoded.errors,
            expression_errors,
        })
    }

    /// Where an aggregation's records go by their GROUP BY values. A record that cannot be
    /// decoded goes to partition 0, where the aggregation reports it.
    fn group_partitions<R: RecordRef>(
        &self,
        decoder: &SourceDecoder,
        records: &[R],
        partitions: i32,
    ) -> Result<Vec<i32>> {
        let decoded = decoder.decode(records)?;
        let batch = &decoded.batch;
        let mut placement = Placement::new(records, partitions);
        self.group_values(batch, &mut Vec::new(), |row, bytes| {
            placement.place_bytes(batch, row, bytes)
        })?;
        Ok(placement.finish())
    }

    /// Hands `place` each row of `batch` (the aggregation's input rows) with its GROUP BY values in
    /// Eddy's row encoding (`state_row`), which stays the same across versions: a group's state
    /// lives in the partition Kafka's partitioner gives those bytes. GROUP BY values that fail are
    /// NULL (as the aggregation computes them too), a group it leaves out. Rows of a query that
    /// does not aggregate are all placed by the same empty values.
    fn group_values(
        &self,
        batch: &RecordBatch,
        failures: &mut Vec<String>,
        mut place: impl FnMut(usize, &[u8]),
    ) -> Result<()> {
        let arrays = match &self.plan.aggregate {
            Some(spec) => spec
                .group_exprs
                .iter()
                .map(|e| {
                    let data_type = e.data_type(&batch.schema()).map_err(|e| exec_err!("{e}"))?;
                    evaluate(e, batch, &data_type, failures)
                })
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let mut bytes = Vec::new();
        for row in 0..batch.num_rows() {
            bytes.clear();
            crate::state_row::encode(&arrays, row, &mut bytes)?;
            place(row, &bytes);
        }
        Ok(())
    }

    /// Filters and projects rows already in the source's input schema (a table's current rows, for a
    /// pull query): rows that fail the filter are left out.
    pub fn process_rows(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let none = BooleanArray::from(vec![false; batch.num_rows()]);
        let processed = self.process_decoded(DecodedBatch {
            batch,
            null_values: none.clone(),
            null_keys: none,
            errors: Vec::new(),
        })?;
        // On a table a row failing the filter comes out as a tombstone.
        let keep = not(&processed.null_values).map_err(|e| exec_err!("{e}"))?;
        filter_record_batch(&processed.batch, &keep).map_err(|e| exec_err!("{e}"))
    }

    fn process_decoded(&self, decoded: DecodedBatch) -> Result<ProcessedBatch> {
        let mut batch = decoded.batch;
        let mut null_values = decoded.null_values;
        let mut null_keys = decoded.null_keys;
        let mut decode_errors = decoded.errors;
        let table = self.plan.source.kind == SourceKind::Table;
        if table && null_keys.true_count() > 0 {
            // A table's rows are upserts by key: a record without a key has nowhere to go.
            let keyed = not(&null_keys).map_err(|e| exec_err!("{e}"))?;
            for i in (0..batch.num_rows()).filter(|i| null_keys.value(*i)) {
                decode_errors.push(DecodeError::processing(
                    partition_at(&batch, i),
                    offset_at(&batch, i),
                    &format!(
                        "Skipped a record without a key: table {} is keyed by its PRIMARY KEY",
                        self.plan.source.name
                    ),
                ));
            }
            batch = filter_record_batch(&batch, &keyed).map_err(|e| exec_err!("{e}"))?;
            null_values = filter_flags(&null_values, &keyed)?;
            null_keys = filter_flags(&null_keys, &keyed)?;
        }
        let mut expression_errors = Vec::new();
        let mask = match &self.plan.filter {
            Some(f) => {
                // A row whose condition fails is left out.
                let mask = evaluate(f, &batch, &DataType::Boolean, &mut expression_errors)?;
                let mask = definitely_true(mask.as_boolean());
                Some(and_not(&mask, &null_values).map_err(|e| exec_err!("{e}"))?)
            }
            None => None,
        };
        // On a table, a row that no longer passes the filter deletes its key: it becomes a tombstone.
        let mask = match mask {
            Some(m) if table && self.plan.filter_deletes => {
                null_values = datafusion::arrow::compute::or(
                    &null_values,
                    &not(&m).map_err(|e| exec_err!("{e}"))?,
                )
                .map_err(|e| exec_err!("{e}"))?;
                match &self.input {
                    // A joined table forgets a key only if its row had passed (Kafka Streams sends
                    // the old value along and drops a change from nothing to nothing).
                    Input::Join(join) => Some(join.settle(&batch, &null_values)?),
                    Input::Source(_) | Input::JoinedRows(_) => None,
                }
            }
            other => other,
        };
        if let Some(mask) = &mask
            && mask.true_count() != batch.num_rows()
        {
            batch = filter_record_batch(&batch, mask).map_err(|e| exec_err!("{e}"))?;
            null_values = filter_flags(&null_values, mask)?;
            null_keys = filter_flags(&null_keys, mask)?;
        }
        if !self.plan.table_functions.is_empty() {
            let schema = batch.schema();
            let lists = self
                .plan
                .table_functions
                .iter()
                .map(|e| {
                    let data_type = e.data_type(&schema).map_err(|e| exec_err!("{e}"))?;
                    evaluate(e, &batch, &data_type, &mut expression_errors)
                })
                .collect::<Result<Vec<_>>>()?;
            let (unnested, rows) = crate::unnest::unnest(&batch, &lists)?;
            let repeat = |flags: &BooleanArray| -> Result<BooleanArray> {
                Ok(datafusion::arrow::compute::take(flags, &rows, None)
                    .map_err(|e| exec_err!("{e}"))?
                    .as_boolean()
                    .clone())
            };
            null_values = repeat(&null_values)?;
            null_keys = repeat(&null_keys)?;
            batch = unnested;
        }
        let projected = batch.clone();
        let rowtime = column_values::<Int64Type>(&batch, 0);
        let partition = column_values::<Int32Type>(&batch, 1);
        let offset = column_values::<Int64Type>(&batch, 2);
        let windows = self.plan.source.window.map(|_| {
            let (starts, ends) = (batch.num_columns() - 2, batch.num_columns() - 1);
            column_values::<Int64Type>(&batch, starts)
                .into_iter()
                .zip(column_values::<Int64Type>(&batch, ends))
                .map(|(start, end)| Bounds { start, end })
                .collect()
        });
        if let Some(state) = &self.aggregate_state {
            let mut state = lock(state);
            let aggregated = state.apply(&batch, &null_values)?;
            expression_errors.append(&mut state.take_errors());
            decode_errors.append(&mut state.take_skipped());
            drop(state);
            let mut processed = self.project_aggregated(aggregated, expression_errors)?;
            processed.decode_errors = decode_errors;
            return Ok(processed);
        }
        self.project(Projected {
            rows: projected,
            rowtime,
            partition,
            offset,
            null_values,
            null_keys,
            windows,
            late_records: 0,
            decode_errors,
            expression_errors,
        })
    }

    /// Per-commit emission: the current row of every group changed since the last flush (none for a
    /// query that does not aggregate).
    pub fn flush(&self) -> Result<Option<ProcessedBatch>> {
        let Some(state) = &self.aggregate_state else {
            return Ok(None);
        };
        let aggregated = lock(state).flush()?;
        self.project_aggregated(aggregated, Vec::new()).map(Some)
    }

    /// The rows an aggregating pipeline's table holds now (for pull queries); `None` for a query
    /// that does not aggregate.
    pub fn snapshot(&self) -> Result<Option<ProcessedBatch>> {
        let Some(state) = &self.aggregate_state else {
            return Ok(None);
        };
        let aggregated = lock(state).snapshot()?;
        self.project_aggregated(aggregated, Vec::new()).map(Some)
    }

    /// As [`Pipeline::snapshot`], for the groups with these GROUP BY values only.
    pub fn snapshot_keys(
        &self,
        keys: &[Vec<datafusion::common::ScalarValue>],
    ) -> Result<Option<ProcessedBatch>> {
        let Some(state) = &self.aggregate_state else {
            return Ok(None);
        };
        let mut state = lock(state);
        match state.snapshot_keys(keys)? {
            Some(aggregated) => self.project_aggregated(aggregated, Vec::new()).map(Some),
            // Most shards hold none of a lookup's keys: their answer is made without the projection.
            None => Ok(Some(ProcessedBatch::empty(
                self.output_schema.clone(),
                state.windowed(),
            ))),
        }
    }

    fn project_aggregated(
        &self,
        aggregated: Aggregated,
        expression_errors: Vec<String>,
    ) -> Result<ProcessedBatch> {
        let rows = aggregated.batch.num_rows();
        self.project(Projected {
            rows: aggregated.batch,
            rowtime: aggregated.rowtime,
            partition: aggregated.partition,
            offset: vec![-1; rows],
            null_values: aggregated.deletes,
            null_keys: BooleanArray::from(vec![false; rows]),
            windows: aggregated.windows,
            late_records: aggregated.late_records,
            decode_errors: Vec::new(),
            expression_errors,
        })
    }

    /// Evaluates the projection over filtered input rows, or over aggregated rows.
    fn project(&self, p: Projected) -> Result<ProcessedBatch> {
        let null_values = p.null_values;
        let mut expression_errors = p.expression_errors;
        let columns: Vec<ArrayRef> = self
            .plan
            .projection
            .iter()
            .zip(self.output_schema.fields())
            .map(|(e, f)| evaluate(e, &p.rows, f.data_type(), &mut expression_errors))
            .collect::<Result<_>>()?;
        let columns = if self.plan.value_dependent_keys.is_empty() || null_values.true_count() == 0
        {
            columns
        } else {
            columns
                .into_iter()
                .zip(self.output_schema.fields())
                .map(|(c, f)| {
                    if self.plan.value_dependent_keys.contains(f.name()) {
                        nullif(&c, &null_values).map_err(|e| exec_err!("{e}"))
                    } else {
                        Ok(c)
                    }
                })
                .collect::<Result<_>>()?
        };
        let out = RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| exec_err!("{e}"))?;
        Ok(ProcessedBatch {
            batch: out,
            rowtime: p.rowtime,
            partition: p.partition,
            offset: p.offset,
            null_values,
            null_keys: (!self.plan.partitioned).then_some(p.null_keys),
            windows: p.windows,
            late_records: p.late_records,
            decode_errors: p.decode_errors,
            expression_errors,
        })
    }
}

/// The schema of a plan's output batches: its output columns, all nullable.
/// The input columns (indexes into the source's, or the joined input's, schema) the query reads.
fn used_columns(plan: &QueryPlan) -> HashSet<usize> {
    // The expressions over the input: with an aggregation, the projection reads aggregated rows.
    let over_input: Vec<Arc<dyn PhysicalExpr>> = match &plan.aggregate {
        Some(spec) => spec
            .group_exprs
            .iter()
            .cloned()
            .chain(spec.aggregates.iter().flat_map(|a| a.expressions()))
            .collect(),
        None => plan.projection.clone(),
    };
    plan.filter
        .iter()
        .chain(&over_input)
        .chain(&plan.table_functions)
        .flat_map(collect_columns)
        .map(|c| c.index())
        .collect()
}

fn output_schema(plan: &QueryPlan) -> SchemaRef {
    Arc::new(Schema::new(
        plan.output_schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// The state of an aggregating plan's groups (none for a plan that does not aggregate).
fn aggregate_state(plan: &QueryPlan, per_commit: bool) -> Option<Arc<Mutex<AggregateState>>> {
    let spec = plan.aggregate.as_ref()?;
    // Over a table, the old row of a key is found by the key's input columns.
    let table_keys = (plan.source.kind == SourceKind::Table)
        .then(|| (PSEUDO_COLUMNS..PSEUDO_COLUMNS + plan.source.key_columns().count()).collect());
    let state = AggregateState::new(spec.clone(), table_keys, plan.emit_final);
    let state = if per_commit {
        state.per_commit()
    } else {
        state
    };
    Some(Arc::new(Mutex::new(state)))
}

fn lock(state: &Mutex<AggregateState>) -> std::sync::MutexGuard<'_, AggregateState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Rows ready for the projection, with what travels along with each.
struct Projected {
    rows: RecordBatch,
    rowtime: Vec<i64>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    null_values: BooleanArray,
    null_keys: BooleanArray,
    windows: Option<Vec<Bounds>>,
    late_records: usize,
    decode_errors: Vec<DecodeError>,
    /// Expressions that failed before the projection (the filter's, the aggregation's).
    expression_errors: Vec<String>,
}

/// A condition's result with NULL read as false.
fn definitely_true(condition: &BooleanArray) -> BooleanArray {
    if condition.null_count() > 0 {
        prep_null_mask_filter(condition)
    } else {
        condition.clone()
    }
}

fn filter_flags(flags: &BooleanArray, mask: &BooleanArray) -> Result<BooleanArray> {
    Ok(datafusion::arrow::compute::filter(flags, mask)
        .map_err(|e| exec_err!("{e}"))?
        .as_boolean()
        .clone())
}

/// The values of a non-null primitive column.
fn column_values<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    batch: &RecordBatch,
    column: usize,
) -> Vec<T::Native> {
    batch.column(column).as_primitive::<T>().values().to_vec()
}

/// Where and how a persistent query writes.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub topic: String,
    pub partitions: i32,
    pub encoder: SinkEncoder,
    /// The output column that gives each record's timestamp (`WITH (TIMESTAMP=...)` on the sink), with
    /// its `TIMESTAMP_FORMAT` as a chrono format for a string column.
    timestamp: Option<(usize, Option<String>)>,
    /// How the sink's keys are windowed.
    window: Option<WindowType>,
}

impl SinkSpec {
    /// A sink writing rows of `columns` (in output order) into `sink`, registering its schemas in
    /// `registry` when its formats need one.
    pub fn new(
        sink: &Source,
        columns: &[eddy_sql::catalog::Column],
        registry: &Arc<dyn SchemaRegistry>,
    ) -> Result<Self> {
        let timestamp = sink.timestamp_column.as_ref().and_then(|t| {
            let i = columns.iter().position(|c| &c.name == t)?;
            Some((i, sink.timestamp_format.as_deref().map(chrono_format)))
        });
        Ok(SinkSpec {
            topic: sink.topic.clone(),
            partitions: sink.partitions,
            encoder: SinkEncoder::new(
                columns,
                sink.key_format,
                sink.value_format,
                registry.as_ref(),
                &sink.topic,
            )?,
            timestamp,
            window: sink.window.map(|w| w.window_type),
        })
    }

    /// The sink of the joins of a split query (see [`Pipeline::split`]): the query's
    /// internal topic `topic`, whose records' values are the joins' output, as it is, in the
    /// partition it names.
    pub fn joined_rows(topic: &str, partitions: i32) -> Result<Self> {
        let rows = eddy_sql::catalog::Column::new(
            "ROWS".to_string(),
            eddy_sql::types::SqlType::Bytes,
            eddy_sql::statement::ColumnRole::Value,
        );
        Ok(SinkSpec {
            topic: topic.to_string(),
            partitions,
            // The KAFKA format writes bytes as they are and registers no schema.
            encoder: SinkEncoder::new(
                &[rows],
                Format::key(FormatKind::None),
                Format::new(FormatKind::Kafka),
                crate::registry::MemoryRegistry::shared().as_ref(),
                topic,
            )?,
            timestamp: None,
            window: None,
        })
    }

    /// The records to produce for a processed batch: keyed rows go where Kafka's default partitioner
    /// sends their key; unkeyed rows stay in their source partition. With a timestamp column, a row
    /// whose timestamp is missing, unreadable or negative is dropped, as ksqlDB does.
    pub fn records(&self, processed: &ProcessedBatch) -> Result<Vec<Record>> {
        let mut records = Vec::with_capacity(processed.batch.num_rows());
        self.each_record(processed, |_, record| records.push(record))?;
        Ok(records)
    }

    /// [`SinkSpec::records`], each with the batch row it was made from.
    pub fn rows(&self, processed: &ProcessedBatch) -> Result<Vec<(usize, Record)>> {
        let mut rows = Vec::with_capacity(processed.batch.num_rows());
        self.each_record(processed, |i, record| rows.push((i, record)))?;
        Ok(rows)
    }

    /// Hands each record to produce for a processed batch to `emit`, with the batch row it was made
    /// from.
    fn each_record(
        &self,
        processed: &ProcessedBatch,
        mut emit: impl FnMut(usize, Record),
    ) -> Result<()> {
        let payloads = self.encoder.encode(
            &processed.batch,
            Some(&processed.null_values),
            processed.null_keys.as_ref(),
        )?;
        let timestamps = match &self.timestamp {
            Some((i, format)) => Some(row_timestamps(
                processed.batch.column(*i),
                format.as_deref(),
            )?),
            None => None,
        };
        for (i, (mut key, value)) in payloads.into_iter().enumerate() {
            let timestamp = match &timestamps {
                Some(t) => match t[i].filter(|t| *t >= 0) {
                    Some(t) => t,
                    None => continue,
                },
                None => processed.rowtime[i],
            };
            // A windowed key goes where its inner key goes (as Kafka Streams partitions them).
            let partition = match &key {
                Some(k) => partition_for(k, self.partitions),
                None => processed.partition[i].rem_euclid(self.partitions.max(1)),
            };
            if let (Some(window_type), Some(windows), Some(k)) =
                (self.window, &processed.windows, key.as_mut())
            {
                append_window(k, window_type, windows[i]);
            }
            emit(
                i,
                Record {
                    key,
                    value,
                    timestamp,
                    partition,
                    offset: -1,
                    headers: Vec::new(),
                },
            );
        }
        Ok(())
    }
}

/// The timestamps (ms) a column holds: BIGINT and TIMESTAMP values, or strings in `format`.
fn row_timestamps(column: &ArrayRef, format: Option<&str>) -> Result<Vec<Option<i64>>> {
    use datafusion::arrow::datatypes::DataType;
    let text = |format: &str| -> Result<Vec<Option<i64>>> {
        let strings = datafusion::arrow::compute::cast(column, &DataType::Utf8)
            .map_err(|e| exec_err!("{e}"))?;
        Ok(strings
            .as_string::<i32>()
            .iter()
            .map(|s| s.and_then(|s| parse_millis(s, format)))
            .collect())
    };
    match (column.data_type(), format) {
        (DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8, Some(f)) => text(f),
        _ => {
            let millis = datafusion::arrow::compute::cast(column, &DataType::Int64)
                .map_err(|e| exec_err!("{e}"))?;
            Ok(millis
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .iter()
                .collect())
        }
    }
}
