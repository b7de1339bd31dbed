//! One join of a join query: how its two sides are keyed and kept as rows, its operator, and the
//! joined rows it lays out ([`JoinPlan::schema`]: ROWTIME, ROWPARTITION, ROWOFFSET, the key, the
//! left side's columns, the right side's). A multi-way join runs one per JOIN, each reading the
//! joined rows of those before it as its left side.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::utils::collect_columns;
use hashbrown::HashMap;

use eddy_common::{Result, exec_err};
use eddy_sql::catalog::{Format, FormatKind, Source};
use eddy_sql::join::{JoinKind, JoinPlan, JoinSide};
use eddy_sql::types::SqlType;

use super::foreign_key::ForeignKeyJoin;
use super::shared_row::Parser;
use super::state::EntryValue;
use super::stream_stream::StreamStreamJoin;
use super::stream_table::StreamTableJoin;
use super::table_table::TableTableJoin;
use super::{Change, Entry, EntryId, JoinOperator, Joined, Origin, SharedRow, Side, SideRow};
use crate::evaluate::evaluate;
use crate::format::encode::PartEncoder;
use crate::format::{DecodeError, DecodedBatch, SourceDecoder};
use crate::joined_rows::JoinedRows;
use crate::partitioner::partition_for;
use crate::placement::Placement;
use crate::record::RecordRef;
use crate::registry::SchemaRegistry;

/// Where the key columns start in a decoded batch and in the joined input (after the pseudo-columns).
pub(super) const KEYS: usize = eddy_sql::catalog::PSEUDO_COLUMNS;

/// What a batch gave: the joined rows, and what was left out on the way.
pub struct JoinedBatch {
    pub decoded: DecodedBatch,
    pub late_records: usize,
    pub expression_errors: Vec<String>,
}

/// An entry changed, with its changelog value (`None`: it is deleted).
pub(super) type EntryChange = (EntryId, Option<Vec<u8>>);

/// The keying and layout of one side.
#[derive(Debug, Clone)]
struct SideInput {
    source: Arc<Source>,
    /// Where its rows come from.
    reader: SideReader,
    key: Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    key_text: String,
    /// The side's rows as row bytes: how operators keep them.
    rows: Arc<RowConverter>,
    parser: Arc<Parser>,
    /// A row of NULLs, for the side of an unmatched row.
    nulls: SharedRow,
    /// For a side repartitioned by its join expression: how its join values are written to place
    /// them (see [`Stage::placements`]).
    placement: Option<PartEncoder>,
    /// The columns the join reads or hands on.
    columns: SideColumns,
}

impl SideInput {
    /// The side `side` of `plan`, of whose columns the join reads or hands on `columns`.
    fn new(
        plan: &JoinPlan,
        side: Side,
        registry: &Arc<dyn SchemaRegistry>,
        columns: SideColumns,
    ) -> Result<Self> {
        let (this, other) = match side {
            Side::Left => (&plan.left, &plan.right),
            Side::Right => (&plan.right, &plan.left),
        };
        let source = &this.source;
        let schema = source.input_schema();
        let rows = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .map_err(|e| exec_err!("{e}"))?;
        let nulls: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 1))
            .collect();
        let nulls = SharedRow::of(
            rows.convert_columns(&nulls)
                .map_err(|e| exec_err!("{e}"))?
                .row(0),
        );
        Ok(SideInput {
            source: source.clone(),
            reader: match this.nested {
                Some(_) => SideReader::Earlier,
                None => {
                    let mut decoder = SourceDecoder::new(source, registry)?;
                    // Only a stream-table join leaves columns out: the rows other joins keep go
                    // to their changelog whole, for whatever query reads them next.
                    if plan.kind == JoinKind::StreamTable {
                        decoder.skip_unused(&columns.read);
                    }
                    SideReader::Topic(Box::new(decoder))
                }
            },
            key: this.key.clone(),
            key_text: this.key_text.clone(),
            parser: Arc::new(Parser::of(&rows)),
            rows: Arc::new(rows),
            nulls,
            placement: placement(plan, this, other)?,
            columns,
        })
    }
}

/// Where the rows of a join's side come from.
#[derive(Debug, Clone)]
enum SideReader {
    /// Records of a source, decoded.
    Topic(Box<SourceDecoder>),
    /// The rows of the joins before it, handed over in the same process.
    Earlier,
    /// The rows of the joins before it, read back from the query's internal topic (see
    /// [`super::JoinInput::split_at`]).
    Rows(JoinedRows),
}

/// How the rows of a side repartitioned by its join expression are placed: the join value written
/// as the other side's key (see [`placement`]), where that side's records of the value are.
#[derive(Debug, Clone)]
pub struct SidePlacement {
    key: Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    data_type: DataType,
    encoder: PartEncoder,
}

impl SidePlacement {
    /// The partition (of `partitions`) each row of `batch` (the side's rows) goes to; `None` where
    /// its join value is NULL or fails (it joins nothing).
    pub fn partitions(&self, batch: &RecordBatch, partitions: i32) -> Result<Vec<Option<i32>>> {
        let key = evaluate(&self.key, batch, &self.data_type, &mut Vec::new())?;
        Ok(self
            .encoder
            .encode(&[key], batch.num_rows())?
            .iter()
            .map(|bytes| bytes.as_ref().map(|b| partition_for(b, partitions)))
            .collect())
    }
}

/// One join: its sides, its keys and its operator.
#[derive(Debug)]
pub(super) struct Stage {
    pub plan: Arc<JoinPlan>,
    sides: [SideInput; 2],
    /// The join expressions' values as row bytes.
    join_keys: Arc<RowConverter>,
    join_key_parser: Arc<Parser>,
    /// The joined rows' keys (the left table's primary key for a foreign-key join) as row bytes.
    pub keys: Arc<RowConverter>,
    key_parser: Arc<Parser>,
    operator: Mutex<Operator>,
}

impl Stage {
    /// The join of `plan`, whose joined rows' columns `used` (indexes) what comes after reads.
    pub fn new(
        plan: Arc<JoinPlan>,
        registry: &Arc<dyn SchemaRegistry>,
        used: &HashSet<usize>,
    ) -> Result<Self> {
        let [left, right] = side_columns(&plan, used);
        let sides = [
            SideInput::new(&plan, Side::Left, registry, left)?,
            SideInput::new(&plan, Side::Right, registry, right)?,
        ];
        let join_keys = RowConverter::new(
            join_key_types(&plan)
                .into_iter()
                .map(SortField::new)
                .collect(),
        )
        .map_err(|e| exec_err!("{e}"))?;
        let key_fields = plan.schema.fields()[KEYS..KEYS + plan.key.columns.len()]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let keys = RowConverter::new(key_fields).map_err(|e| exec_err!("{e}"))?;
        Ok(Stage {
            join_key_parser: Arc::new(Parser::of(&join_keys)),
            key_parser: Arc::new(Parser::of(&keys)),
            join_keys: Arc::new(join_keys),
            operator: Mutex::new(Operator::new(&plan, &sides[1].columns.handed_on)),
            plan,
            sides,
            keys: Arc::new(keys),
        })
    }

    /// The same join with nothing seen yet.
    pub fn fresh(&self) -> Stage {
        Stage {
            plan: self.plan.clone(),
            sides: self.sides.clone(),
            join_keys: self.join_keys.clone(),
            join_key_parser: self.join_key_parser.clone(),
            keys: self.keys.clone(),
            key_parser: self.key_parser.clone(),
            operator: Mutex::new(Operator::new(&self.plan, &self.sides[1].columns.handed_on)),
        }
    }

    pub fn operator(&self) -> MutexGuard<'_, Operator> {
        self.operator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it keeps state that its inputs' topics cannot give back: a stream-stream join's
    /// buffers. (Tables are read back from their topics.)
    pub fn keeps_state(&self) -> bool {
        matches!(self.plan.kind, JoinKind::StreamStream(_))
    }

    /// The columns of a side that the join reads or hands on.
    pub fn used(&self, side: Side) -> &HashSet<usize> {
        &self.sides[side.index()].columns.read
    }

    /// The source a side reads (for the left side of a later join: the earlier joins' rows).
    pub fn source(&self, side: Side) -> &Arc<Source> {
        &self.sides[side.index()].source
    }

    /// Decodes records of a side read from a topic.
    pub fn decode<R: RecordRef>(&self, side: Side, records: &[R]) -> Result<DecodedBatch> {
        match &self.sides[side.index()].reader {
            SideReader::Topic(decoder) => decoder.decode(records),
            SideReader::Rows(rows) => rows.decode(records),
            SideReader::Earlier => Err(exec_err!(
                "a join's side read from earlier joins has no records"
            )),
        }
    }

    /// The same join with its left side, the rows of the joins before it, read back from the
    /// query's internal topic (`source`; see [`super::JoinInput::split_at`]), as those joins laid
    /// them out (`schema`).
    pub fn reading_earlier_rows(&self, source: Arc<Source>, schema: SchemaRef) -> Stage {
        let mut stage = self.fresh();
        stage.sides[0].reader = SideReader::Rows(JoinedRows::new(schema));
        stage.sides[0].source = source;
        stage
    }

    /// Whether its left side is read back from the query's internal topic.
    pub fn reads_earlier_rows(&self) -> bool {
        matches!(self.sides[0].reader, SideReader::Rows(_))
    }

    /// How the rows of `side` are placed, when it is repartitioned by its join expression.
    pub fn placement(&self, side: Side) -> Option<SidePlacement> {
        let input = &self.sides[side.index()];
        Some(SidePlacement {
            key: input.key.clone(),
            data_type: self.plan.key.data_type.clone(),
            encoder: input.placement.clone()?,
        })
    }

    /// The changes to what the operator keeps since the last call, in the order they happened
    /// (each put with its changelog value), and its stream time.
    pub fn changes(&self) -> Result<(Vec<EntryChange>, i64)> {
        let (changes, stream_time) = match &mut *self.operator() {
            Operator::Records(join) => join.changes(),
            Operator::Lookup(_) => (Vec::new(), i64::MIN),
        };
        // Each side's rows and keys are converted in one go.
        let mut values: HashMap<EntryId, Vec<u8>> = HashMap::new();
        for side in [Side::Left, Side::Right] {
            let puts: Vec<&Entry> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Put(e) if e.id.side == side => Some(e),
                    _ => None,
                })
                .collect();
            if puts.is_empty() {
                continue;
            }
            let input = &self.sides[side.index()];
            let rows = input
                .rows
                .convert_rows(puts.iter().map(|e| input.parser.row(&e.row)))
                .map_err(|e| exec_err!("{e}"))?;
            let keys = self
                .join_keys
                .convert_rows(puts.iter().map(|e| self.join_key_parser.row(&e.key)))
                .map_err(|e| exec_err!("{e}"))?;
            for (i, e) in puts.iter().enumerate() {
                let (mut key, mut row) = (Vec::new(), Vec::new());
                crate::state_row::encode(&keys, i, &mut key)?;
                crate::state_row::encode(&rows, i, &mut row)?;
                let value = EntryValue {
                    time: e.time,
                    seq: e.seq,
                    key: &key,
                    row: &row,
                };
                values.insert(e.id, value.encode()?);
            }
        }
        let changes = changes
            .iter()
            .map(|c| match c {
                Change::Put(e) => (e.id, values.get(&e.id).cloned()),
                Change::Delete(id) => (*id, None),
            })
            .collect();
        Ok((changes, stream_time))
    }

    /// Takes back what the operator kept (`kept`: its entries' changelog values) and its stream time.
    pub fn restore(&self, kept: Vec<(EntryId, &[u8])>, stream_time: i64) -> Result<()> {
        let mut entries = Vec::with_capacity(kept.len());
        for side in [Side::Left, Side::Right] {
            let kept: Vec<(EntryId, EntryValue<'_>)> = kept
                .iter()
                .filter(|(id, _)| id.side == side)
                .map(|(id, v)| Ok((*id, EntryValue::decode(v)?)))
                .collect::<Result<_>>()?;
            if kept.is_empty() {
                continue;
            }
            let input = &self.sides[side.index()];
            let row_types: Vec<DataType> = input
                .source
                .input_schema()
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            let rows = decoded_rows(&input.rows, &row_types, kept.iter().map(|(_, v)| v.row))?;
            let keys = decoded_rows(
                &self.join_keys,
                &join_key_types(&self.plan),
                kept.iter().map(|(_, v)| v.key),
            )?;
            entries.extend(kept.iter().enumerate().map(|(i, (id, v))| Entry {
                id: *id,
                key: SharedRow::of(keys.row(i)),
                row: SharedRow::of(rows.row(i)),
                time: v.time,
                seq: v.seq,
            }));
        }
        if let Operator::Records(join) = &mut *self.operator() {
            join.restore(entries, stream_time);
        }
        Ok(())
    }

    /// The partition (of `partitions`) each record of `side`, a side repartitioned by its join
    /// expression, goes to: where Kafka's default partitioner puts its join value written as the
    /// other side's key (see [`placement`]), where that side's records of the value are. A record
    /// that cannot be decoded or whose join value is NULL or fails stays in partition 0, where the
    /// join reports or leaves it out as it would anyway.
    pub fn placements<R: RecordRef>(
        &self,
        side: Side,
        records: &[R],
        partitions: i32,
    ) -> Result<Vec<i32>> {
        let mut placement = Placement::new(records, partitions);
        let Some(side_placement) = self.placement(side) else {
            return Ok(placement.finish());
        };
        let decoded = self.decode(side, records)?;
        let batch = &decoded.batch;
        for (row, target) in side_placement
            .partitions(batch, partitions)?
            .iter()
            .enumerate()
        {
            if let Some(target) = target {
                placement.place(batch, row, *target);
            }
        }
        Ok(placement.finish())
    }

    /// Joins a batch of one side: records decoded from query input `input`, or the rows earlier
    /// joins made of them. `replayed` (for records read from a topic) skips records a restored
    /// state already includes: per input and partition, the last such offset.
    pub fn join(
        &self,
        side: Side,
        decoded: DecodedBatch,
        input: u16,
        replayed: Option<&mut HashMap<(u16, i32), i64>>,
    ) -> Result<JoinedBatch> {
        let this = &self.sides[side.index()];
        let DecodedBatch {
            batch,
            null_values,
            mut errors,
            ..
        } = decoded;
        let mut expression_errors = Vec::new();
        // The rows of earlier joins not repartitioned are joined on their key (the planner joins
        // them on nothing else).
        let key = match this.reader {
            SideReader::Earlier if this.placement.is_none() => {
                cast_to(batch.column(KEYS).clone(), &self.plan.key.data_type)?
            }
            _ => evaluate(
                &this.key,
                &batch,
                &self.plan.key.data_type,
                &mut expression_errors,
            )?,
        };
        let mut key_parts = vec![key.clone()];
        if this.source.window.is_some() {
            key_parts.push(batch.column(batch.num_columns() - 2).clone());
        }
        let join_keys = self
            .join_keys
            .convert_columns(&key_parts)
            .map_err(|e| exec_err!("{e}"))?;
        let input = SideBatch {
            side,
            origins: origins(&batch, input, replayed),
            batch: &batch,
            null_values: &null_values,
            key: &key,
            join_keys: &join_keys,
        };
        let laid = match &mut *self.operator() {
            Operator::Lookup(join) => self.look_up(join, &input, &mut errors)?,
            Operator::Records(join) => self.pair(join.as_mut(), &input, &mut errors)?,
        };
        let mut columns = laid.columns;
        if self.plan.left.source.window.is_some() {
            // The joined row's window: the left side's, or the right's where the left is missing.
            let width = |side: usize| self.sides[side].source.input_schema().fields().len();
            let key_count = self.plan.key.columns.len();
            let (left_end, all) = (KEYS + key_count + width(0), columns.len());
            for (left, right) in [(left_end - 2, all - 2), (left_end - 1, all - 1)] {
                let bound = datafusion::arrow::compute::kernels::zip::zip(
                    &datafusion::arrow::compute::is_not_null(&columns[left])
                        .map_err(|e| exec_err!("{e}"))?,
                    &columns[left],
                    &columns[right],
                )
                .map_err(|e| exec_err!("{e}"))?;
                columns.push(bound);
            }
        }
        let batch = RecordBatch::try_new(self.plan.schema.clone(), columns)
            .map_err(|e| exec_err!("joined rows: {e}"))?;
        let rows = batch.num_rows();
        Ok(JoinedBatch {
            decoded: DecodedBatch {
                batch,
                null_values: laid.tombstones,
                null_keys: BooleanArray::from(vec![false; rows]),
                errors,
            },
            late_records: laid.late_records,
            expression_errors,
        })
    }

    /// A record of `side` whose join expression is NULL, which joins nothing.
    fn null_key(&self, side: Side, origin: &Origin) -> DecodeError {
        let this = &self.sides[side.index()];
        DecodeError::processing(
            origin.partition,
            origin.offset,
            &format!(
                "Skipped a record of {} whose join expression {} is NULL",
                this.source.name, this.key_text
            ),
        )
    }

    /// A stream-table join's batch: the table's records update it, the stream's are looked up.
    fn look_up(
        &self,
        join: &mut StreamTableJoin,
        input: &SideBatch<'_>,
        errors: &mut Vec<DecodeError>,
    ) -> Result<Laid> {
        let keyed = input.origins.iter().filter_map(|(at, origin)| {
            if input.key.is_null(*at) {
                errors.push(self.null_key(input.side, origin));
                return None;
            }
            Some(*at)
        });
        let batch = input.batch;
        if input.side == Side::Right {
            let records = keyed.map(|at| {
                let present = !input.null_values.value(at);
                (input.join_keys.row(at).data(), at, present)
            });
            join.update(batch.columns(), records)?;
            let width = self.plan.schema.fields().len() - self.window_bounds();
            return Ok(Laid {
                columns: self.plan.schema.fields()[..width]
                    .iter()
                    .map(|f| datafusion::arrow::array::new_empty_array(f.data_type()))
                    .collect(),
                tombstones: BooleanArray::from(Vec::<bool>::new()),
                late_records: 0,
            });
        }
        // A stream record without a value joins nothing.
        let records: Vec<(usize, &[u8])> = keyed
            .filter(|at| !input.null_values.value(*at))
            .map(|at| (at, input.join_keys.row(at).data()))
            .collect();
        let found = join.lookup(&records);
        let indices = batch_indices(found.iter().map(|(at, _)| Some(*at)))?;
        let taken = |c: &ArrayRef| take(c, &indices, None).map_err(|e| exec_err!("{e}"));
        let mut columns = batch.columns()[..KEYS]
            .iter()
            .map(taken)
            .collect::<Result<Vec<_>>>()?;
        columns.push(cast_to(
            taken(input.key)?,
            self.plan.schema.field(KEYS).data_type(),
        )?);
        for c in batch.columns() {
            columns.push(taken(c)?);
        }
        let places: Vec<_> = found.iter().map(|(_, place)| *place).collect();
        columns.extend(join.rows(&places)?);
        Ok(Laid {
            columns,
            tombstones: BooleanArray::from(vec![false; found.len()]),
            late_records: 0,
        })
    }

    /// A batch for a join that pairs records one by one: each record is handed to the operator as
    /// row bytes, and the rows it makes are laid out (from the batch's own columns where they can).
    fn pair(
        &self,
        join: &mut dyn JoinOperator,
        input: &SideBatch<'_>,
        errors: &mut Vec<DecodeError>,
    ) -> Result<Laid> {
        let (side, batch, key) = (input.side, input.batch, input.key);
        let this = &self.sides[side.index()];
        // The left side of a foreign-key join is keyed by its primary key.
        let primary = if self.plan.kind == JoinKind::ForeignKey && side == Side::Left {
            let n = self.plan.key.columns.len();
            Some(
                self.keys
                    .convert_columns(&batch.columns()[KEYS..KEYS + n])
                    .map_err(|e| exec_err!("{e}"))?,
            )
        } else {
            None
        };
        let rows = this
            .rows
            .convert_columns(batch.columns())
            .map_err(|e| exec_err!("{e}"))?;
        // The rows handed to the operator, by position: what it hands back of them is laid out
        // from the batch's columns.
        let mut own: Vec<Option<SharedRow>> = vec![None; batch.num_rows()];
        let mut own_keys: Vec<Option<SharedRow>> = vec![None; batch.num_rows()];
        let times = batch.column(0).as_primitive::<Int64Type>();
        let mut side_rows = Vec::with_capacity(input.origins.len());
        for &(at, origin) in &input.origins {
            let row = (!input.null_values.value(at)).then(|| SharedRow::of(rows.row(at)));
            own[at].clone_from(&row);
            if let Some(primary) = &primary {
                side_rows.push(SideRow {
                    key: SharedRow::of(primary.row(at)),
                    foreign: (!key.is_null(at)).then(|| SharedRow::of(input.join_keys.row(at))),
                    row,
                    time: times.value(at),
                    at,
                    origin,
                });
                continue;
            }
            if key.is_null(at) {
                errors.push(self.null_key(side, &origin));
                continue;
            }
            let join_key = SharedRow::of(input.join_keys.row(at));
            own_keys[at] = Some(join_key.clone());
            side_rows.push(SideRow {
                key: join_key,
                foreign: None,
                row,
                time: times.value(at),
                at,
                origin,
            });
        }
        let output = join.process(side, side_rows)?;
        let joined = &output.rows;
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(joined.iter().map(|j| j.time))),
            Arc::new(Int32Array::from_iter_values(
                joined.iter().map(|j| partitions.value(j.at)),
            )),
            Arc::new(Int64Array::from_iter_values(
                joined.iter().map(|j| offsets.value(j.at)),
            )),
        ];
        let key_count = self.plan.key.columns.len();
        // Keys that are this batch's join values are taken from them (a foreign-key join's are
        // the left table's primary keys).
        if self.plan.kind != JoinKind::ForeignKey
            && joined
                .iter()
                .all(|j| own_keys[j.at].as_ref().is_some_and(|k| k.is(&j.key)))
        {
            let indices = batch_indices(joined.iter().map(|j| Some(j.at)))?;
            let taken = take(key, &indices, None).map_err(|e| exec_err!("{e}"))?;
            columns.push(cast_to(taken, self.plan.schema.field(KEYS).data_type())?);
        } else {
            let (out_keys, parser) = if self.plan.kind == JoinKind::ForeignKey {
                (&self.keys, &self.key_parser)
            } else {
                (&self.join_keys, &self.join_key_parser)
            };
            let key_columns = out_keys
                .convert_rows(joined.iter().map(|j| parser.row(&j.key)))
                .map_err(|e| exec_err!("{e}"))?;
            for (i, k) in key_columns.into_iter().take(key_count).enumerate() {
                columns.push(cast_to(k, self.plan.schema.field(KEYS + i).data_type())?);
            }
        }
        for (n, (s, pick)) in self
            .sides
            .iter()
            .zip([
                (|j: &Joined| j.left.as_ref()) as fn(&Joined) -> Option<&SharedRow>,
                |j: &Joined| j.right.as_ref(),
            ])
            .enumerate()
        {
            let from_batch = n == side.index()
                && joined
                    .iter()
                    .all(|j| pick(j).is_none_or(|r| own[j.at].as_ref().is_some_and(|o| o.is(r))));
            if from_batch {
                let indices = batch_indices(joined.iter().map(|j| pick(j).map(|_| j.at)))?;
                for c in batch.columns() {
                    columns.push(take(c, &indices, None).map_err(|e| exec_err!("{e}"))?);
                }
                continue;
            }
            let side_columns = s
                .rows
                .convert_rows(
                    joined
                        .iter()
                        .map(|j| s.parser.row(pick(j).unwrap_or(&s.nulls))),
                )
                .map_err(|e| exec_err!("{e}"))?;
            columns.extend(side_columns);
        }
        Ok(Laid {
            columns,
            tombstones: BooleanArray::from_iter(joined.iter().map(|j| Some(j.tombstone))),
            late_records: output.late_records,
        })
    }

    /// The columns a windowed join adds at the end: the joined row's window bounds.
    fn window_bounds(&self) -> usize {
        match self.plan.left.source.window {
            Some(_) => 2,
            None => 0,
        }
    }
}

/// A batch of one side of a join, keyed.
struct SideBatch<'a> {
    side: Side,
    /// The rows to join (by position), each with where it comes from: rows a restored state
    /// already includes are left out.
    origins: Vec<(usize, Origin)>,
    batch: &'a RecordBatch,
    null_values: &'a BooleanArray,
    /// The join expression's values.
    key: &'a ArrayRef,
    /// The values the join matches on (the join expression's, with the window start for windowed
    /// sources) as row bytes.
    join_keys: &'a Rows,
}

/// The joined rows a batch made, laid out up to the window bounds, and what they delete.
struct Laid {
    columns: Vec<ArrayRef>,
    tombstones: BooleanArray,
    late_records: usize,
}

/// Where each row of `batch` from query input `input` comes from, skipping those `replayed` holds.
fn origins(
    batch: &RecordBatch,
    input: u16,
    replayed: Option<&mut HashMap<(u16, i32), i64>>,
) -> Vec<(usize, Origin)> {
    let partitions = batch.column(1).as_primitive::<Int32Type>();
    let offsets = batch.column(2).as_primitive::<Int64Type>();
    let mut replayed = replayed.filter(|r| !r.is_empty());
    let mut previous: Option<Origin> = None;
    let mut out = Vec::with_capacity(batch.num_rows());
    for at in 0..batch.num_rows() {
        let (partition, offset) = (partitions.value(at), offsets.value(at));
        if let Some(replayed) = replayed.as_deref_mut()
            && let Some(last) = replayed.get(&(input, partition)).copied()
        {
            if offset <= last {
                continue;
            }
            replayed.remove(&(input, partition));
        }
        // Rows earlier joins made of one record come together: they are told apart by number.
        let sub = match previous {
            Some(p) if (p.partition, p.offset) == (partition, offset) => p.sub.saturating_add(1),
            _ => 0,
        };
        let origin = Origin {
            input,
            partition,
            offset,
            sub,
        };
        previous = Some(origin);
        out.push((at, origin));
    }
    out
}

/// The columns of each side that a join hands on (those that land in a column `used` of its
/// joined rows), and those it reads or hands on: these, the pseudo-columns and the columns its join
/// expression reads (and a windowed side's window bounds; the left side of a foreign-key join's
/// primary key; the key of the rows of earlier joins).
fn side_columns(plan: &JoinPlan, used: &HashSet<usize>) -> [SideColumns; 2] {
    let key_count = plan.key.columns.len();
    let mut start = KEYS + key_count;
    [(&plan.left, Side::Left), (&plan.right, Side::Right)].map(|(side, which)| {
        let width = side.source.input_schema().fields().len();
        let handed_on: HashSet<usize> =
            (0..width).filter(|i| used.contains(&(start + i))).collect();
        let mut read: HashSet<usize> = handed_on
            .iter()
            .copied()
            .chain(0..KEYS)
            .chain(collect_columns(&side.key).iter().map(|c| c.index()))
            .collect();
        if side.source.window.is_some() {
            read.extend([width - 2, width - 1]);
        }
        if side.nested.is_some() {
            read.insert(KEYS);
        }
        if plan.kind == JoinKind::ForeignKey && which == Side::Left {
            read.extend(KEYS..KEYS + key_count);
        }
        start += width;
        SideColumns { handed_on, read }
    })
}

/// The columns of a side a join hands on, and those it reads or hands on (indexes).
#[derive(Debug, Clone)]
struct SideColumns {
    handed_on: HashSet<usize>,
    read: HashSet<usize>,
}

/// Positions in a batch as `take` indices (`None`: a NULL row).
fn batch_indices(positions: impl Iterator<Item = Option<usize>>) -> Result<UInt32Array> {
    positions
        .map(|at| {
            at.map(|at| u32::try_from(at).map_err(|_| exec_err!("a batch of {at} rows")))
                .transpose()
        })
        .collect()
}

/// Rows in Eddy's row encoding ([`crate::state_row`]) of columns of `types`, as `converter`'s rows.
fn decoded_rows<'a>(
    converter: &RowConverter,
    types: &[DataType],
    encoded: impl Iterator<Item = &'a [u8]>,
) -> Result<datafusion::arrow::row::Rows> {
    let columns = crate::state_row::decode(types, &encoded.collect::<Vec<_>>())?;
    converter
        .convert_columns(&columns)
        .map_err(|e| exec_err!("{e}"))
}

/// How a side repartitioned by its join expression (`this`) writes its join values to place them:
/// as the other side's key is written (its key format, with the key's type), so that a value lands
/// where the other side's producers put that key; when both sides are repartitioned, as JSON.
fn placement(plan: &JoinPlan, this: &JoinSide, other: &JoinSide) -> Result<Option<PartEncoder>> {
    if !this.repartition {
        return Ok(None);
    }
    let key_type = SqlType::from_arrow(&plan.key.data_type)?;
    let column = other.source.key_columns().next().map(|c| c.name.clone());
    let (format, name) = match column {
        Some(name) if !other.repartition => (other.source.key_format, name),
        _ => (Format::new(FormatKind::Json), "KEY".to_string()),
    };
    Ok(Some(PartEncoder::new(format, vec![(name, key_type)])))
}

/// The types of a join's keys: the join expression's, and for sources with windowed keys, which
/// join window by window, the window's start.
fn join_key_types(plan: &JoinPlan) -> Vec<DataType> {
    let mut types = vec![plan.key.data_type.clone()];
    if plan.left.source.window.is_some() {
        types.push(DataType::Int64);
    }
    types
}

/// A join's operator: one that pairs records one by one, or a stream-table join, which looks a
/// batch's records up at once.
#[derive(Debug)]
pub(super) enum Operator {
    Records(Box<dyn JoinOperator>),
    Lookup(StreamTableJoin),
}

impl Operator {
    /// The operator of `plan`'s kind, with nothing seen yet; a stream-table join keeps the
    /// table's columns in `table_used` only.
    fn new(plan: &JoinPlan, table_used: &HashSet<usize>) -> Self {
        let records: Box<dyn JoinOperator> = match plan.kind {
            JoinKind::StreamStream(within) => {
                Box::new(StreamStreamJoin::new(plan.join_type, within))
            }
            JoinKind::StreamTable => {
                let table = plan.right.source.input_schema();
                let keep = plan.join_type.keeps_left();
                return Operator::Lookup(StreamTableJoin::new(keep, &table, table_used));
            }
            JoinKind::TableTable => Box::new(TableTableJoin::new(plan.join_type)),
            JoinKind::ForeignKey => Box::new(ForeignKeyJoin::new(plan.join_type.keeps_left())),
        };
        Operator::Records(records)
    }

    /// Starts listing the changes to what it keeps (see [`JoinOperator::log_changes`]).
    pub fn log_changes(&mut self) {
        if let Operator::Records(join) = self {
            join.log_changes();
        }
    }
}

fn cast_to(array: ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if array.data_type() == data_type {
        return Ok(array);
    }
    datafusion::arrow::compute::cast(&array, data_type).map_err(|e| exec_err!("{e}"))
}
