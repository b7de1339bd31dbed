//! The input of a join query: decodes each side's records, keys them by the side's join expression,
//! hands them to the join operator and lays the rows it joins out as the joined input
//! ([`JoinPlan::schema`]): ROWTIME, ROWPARTITION, ROWOFFSET, the key, the left side's columns, the
//! right side's.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;
use hashbrown::HashSet;

use eddy_common::{Result, exec_err};
use eddy_sql::catalog::Source;
use eddy_sql::join::{JoinKind, JoinPlan};

use super::foreign_key::ForeignKeyJoin;
use super::stream_stream::StreamStreamJoin;
use super::stream_table::StreamTableJoin;
use super::table_table::TableTableJoin;
use super::{JoinOperator, Joined, Side, SideRow};
use crate::format::{DecodeError, DecodedBatch, SourceDecoder};
use crate::pipeline::evaluate;
use crate::record::RecordRef;
use crate::registry::SchemaRegistry;

/// Where the key columns start in a decoded batch and in the joined input (after the pseudo-columns).
const KEYS: usize = eddy_sql::catalog::PSEUDO_COLUMNS;

/// Decoding, keying and laying out of one side.
#[derive(Debug, Clone)]
struct SideInput {
    source: Arc<Source>,
    decoder: SourceDecoder,
    key: Arc<dyn PhysicalExpr>,
    key_text: String,
    /// The side's rows as row bytes: how operators keep them.
    rows: Arc<RowConverter>,
    /// A row of NULLs, for the side of an unmatched row.
    nulls: OwnedRow,
}

impl SideInput {
    fn new(
        source: &Arc<Source>,
        key: &Arc<dyn PhysicalExpr>,
        key_text: &str,
        registry: &Arc<dyn SchemaRegistry>,
    ) -> Result<Self> {
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
        let nulls = rows
            .convert_columns(&nulls)
            .map_err(|e| exec_err!("{e}"))?
            .row(0)
            .owned();
        Ok(SideInput {
            source: source.clone(),
            decoder: SourceDecoder::new(source, registry)?,
            key: key.clone(),
            key_text: key_text.to_string(),
            rows: Arc::new(rows),
            nulls,
        })
    }
}

/// A join query's two inputs and its operator.
#[derive(Debug)]
pub struct JoinInput {
    plan: Arc<JoinPlan>,
    sides: [SideInput; 2],
    /// The join expressions' values as row bytes.
    join_keys: Arc<RowConverter>,
    /// The joined rows' keys (the left table's primary key for a foreign-key join) as row bytes.
    keys: Arc<RowConverter>,
    operator: Mutex<Box<dyn JoinOperator>>,
    /// The keys a filtered table-table join's output holds a row for.
    present: Mutex<HashSet<OwnedRow>>,
}

/// What a side's batch gave: the joined rows, and what was left out on the way.
pub struct JoinedBatch {
    pub decoded: DecodedBatch,
    pub late_records: usize,
    pub expression_errors: Vec<String>,
}

impl JoinInput {
    pub fn new(plan: Arc<JoinPlan>, registry: &Arc<dyn SchemaRegistry>) -> Result<Self> {
        let sides = [
            SideInput::new(
                &plan.left.source,
                &plan.left.key,
                &plan.left.key_text,
                registry,
            )?,
            SideInput::new(
                &plan.right.source,
                &plan.right.key,
                &plan.right.key_text,
                registry,
            )?,
        ];
        // Sources with windowed keys join window by window: the window's start is part of the key.
        let mut join_fields = vec![SortField::new(plan.key.data_type.clone())];
        if plan.left.source.window.is_some() {
            join_fields.push(SortField::new(DataType::Int64));
        }
        let join_keys = RowConverter::new(join_fields).map_err(|e| exec_err!("{e}"))?;
        let key_fields = plan.schema.fields()[KEYS..KEYS + plan.key.columns.len()]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let keys = RowConverter::new(key_fields).map_err(|e| exec_err!("{e}"))?;
        Ok(JoinInput {
            join_keys: Arc::new(join_keys),
            operator: Mutex::new(operator(&plan)),
            present: Mutex::default(),
            plan,
            sides,
            keys: Arc::new(keys),
        })
    }

    /// The same join with nothing seen yet.
    pub fn fresh(&self) -> JoinInput {
        JoinInput {
            plan: self.plan.clone(),
            sides: self.sides.clone(),
            join_keys: self.join_keys.clone(),
            keys: self.keys.clone(),
            operator: Mutex::new(operator(&self.plan)),
            present: Mutex::default(),
        }
    }

    /// Which rows of a filtered table-table join's output to keep (`deletes`: the rows that delete
    /// their key): a deletion of a key whose last row was not emitted is dropped.
    pub fn settle(&self, batch: &RecordBatch, deletes: &BooleanArray) -> Result<BooleanArray> {
        let keys = self
            .keys
            .convert_columns(&batch.columns()[KEYS..KEYS + self.plan.key.columns.len()])
            .map_err(|e| exec_err!("{e}"))?;
        let mut present = self.present.lock().unwrap_or_else(|p| p.into_inner());
        Ok((0..batch.num_rows())
            .map(|i| {
                let key = keys.row(i).owned();
                Some(if deletes.value(i) {
                    present.remove(&key)
                } else {
                    present.insert(key);
                    true
                })
            })
            .collect())
    }

    /// The source each side reads.
    pub fn source(&self, side: Side) -> &Arc<Source> {
        &self.sides[side.index()].source
    }

    /// Decodes records of one side and joins them; the joined rows come out in the joined input's
    /// layout.
    pub fn process<R: RecordRef>(&self, side: Side, records: &[R]) -> Result<JoinedBatch> {
        let input = &self.sides[side.index()];
        let decoded = input.decoder.decode(records)?;
        let batch = &decoded.batch;
        let mut errors = decoded.errors;
        let mut expression_errors = Vec::new();
        let key = evaluate(
            &input.key,
            batch,
            &self.plan.key.data_type,
            &mut expression_errors,
        )?;
        let mut key_parts = vec![key.clone()];
        if input.source.window.is_some() {
            key_parts.push(batch.column(batch.num_columns() - 2).clone());
        }
        let join_keys = self
            .join_keys
            .convert_columns(&key_parts)
            .map_err(|e| exec_err!("{e}"))?;
        // The left side of a foreign-key join is keyed by its primary key.
        let foreign = self.plan.kind == JoinKind::ForeignKey && side == Side::Left;
        let primary = if foreign {
            let n = self.plan.key.columns.len();
            Some(
                self.keys
                    .convert_columns(&batch.columns()[KEYS..KEYS + n])
                    .map_err(|e| exec_err!("{e}"))?,
            )
        } else {
            None
        };
        let rows = input
            .rows
            .convert_columns(batch.columns())
            .map_err(|e| exec_err!("{e}"))?;
        let times = batch.column(0).as_primitive::<Int64Type>();
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        let mut side_rows = Vec::with_capacity(batch.num_rows());
        for at in 0..batch.num_rows() {
            if let Some(primary) = &primary {
                side_rows.push(SideRow {
                    key: primary.row(at).owned(),
                    foreign: (!key.is_null(at)).then(|| join_keys.row(at).owned()),
                    row: (!decoded.null_values.value(at)).then(|| rows.row(at).owned()),
                    time: times.value(at),
                    at,
                });
                continue;
            }
            if key.is_null(at) {
                errors.push(DecodeError::processing(
                    partitions.value(at),
                    offsets.value(at),
                    &format!(
                        "Skipped a record of {} whose join expression {} is NULL",
                        input.source.name, input.key_text
                    ),
                ));
                continue;
            }
            side_rows.push(SideRow {
                key: join_keys.row(at).owned(),
                foreign: None,
                row: (!decoded.null_values.value(at)).then(|| rows.row(at).owned()),
                time: times.value(at),
                at,
            });
        }
        let output = self
            .operator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .process(side, side_rows)?;
        let joined = &output.rows;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(joined.iter().map(|j| j.time))),
            Arc::new(Int32Array::from_iter_values(
                joined.iter().map(|j| partitions.value(j.at)),
            )),
            Arc::new(Int64Array::from_iter_values(
                joined.iter().map(|j| offsets.value(j.at)),
            )),
        ];
        let out_keys = if self.plan.kind == JoinKind::ForeignKey {
            &self.keys
        } else {
            &self.join_keys
        };
        let key_columns = out_keys
            .convert_rows(joined.iter().map(|j| j.key.row()))
            .map_err(|e| exec_err!("{e}"))?;
        let key_count = self.plan.key.columns.len();
        for (i, k) in key_columns.into_iter().take(key_count).enumerate() {
            columns.push(cast_to(k, self.plan.schema.field(KEYS + i).data_type())?);
        }
        for (s, pick) in self.sides.iter().zip([
            (|j: &Joined| j.left.as_ref()) as fn(&Joined) -> Option<&OwnedRow>,
            |j: &Joined| j.right.as_ref(),
        ]) {
            let side_columns = s
                .rows
                .convert_rows(joined.iter().map(|j| pick(j).unwrap_or(&s.nulls).row()))
                .map_err(|e| exec_err!("{e}"))?;
            columns.extend(side_columns);
        }
        if self.plan.left.source.window.is_some() {
            // The joined row's window: the left side's, or the right's where the left is missing.
            let width = |side: usize| self.sides[side].source.input_schema().fields().len();
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
        let tombstones = BooleanArray::from_iter(joined.iter().map(|j| Some(j.tombstone)));
        Ok(JoinedBatch {
            decoded: DecodedBatch {
                batch,
                null_values: tombstones,
                null_keys: BooleanArray::from(vec![false; joined.len()]),
                errors,
            },
            late_records: output.late_records,
            expression_errors,
        })
    }
}

/// The operator of a join's kind, with nothing seen yet.
fn operator(plan: &JoinPlan) -> Box<dyn JoinOperator> {
    match plan.kind {
        JoinKind::StreamStream(within) => Box::new(StreamStreamJoin::new(plan.join_type, within)),
        JoinKind::StreamTable => Box::new(StreamTableJoin::new(plan.join_type.keeps_left())),
        JoinKind::TableTable => Box::new(TableTableJoin::new(plan.join_type)),
        JoinKind::ForeignKey => Box::new(ForeignKeyJoin::new(plan.join_type.keeps_left())),
    }
}

fn cast_to(array: ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if array.data_type() == data_type {
        return Ok(array);
    }
    datafusion::arrow::compute::cast(&array, data_type).map_err(|e| exec_err!("{e}"))
}
