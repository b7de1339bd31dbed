//! A stateless query pipeline: decoded batch → filter → projection → encoded records, all over whole
//! Arrow batches.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, new_null_array,
};
use datafusion::arrow::compute::{
    and_not, concat, filter_record_batch, nullif, prep_null_mask_filter,
};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;

use eddy_common::{Result, exec_err};
use eddy_sql::catalog::{Format, PSEUDO_COLUMNS, Source};
use eddy_sql::planner::QueryPlan;

use crate::format::{DecodeError, SinkEncoder, SourceDecoder};
use crate::partitioner::partition_for;
use crate::record::{Record, RecordRef};

/// The result of running one batch through a pipeline.
#[derive(Debug, Clone)]
pub struct ProcessedBatch {
    /// Output rows in the query's output schema.
    pub batch: RecordBatch,
    /// Event time of every output row (inherited from its input row).
    pub rowtime: Vec<i64>,
    /// Source partition of every output row.
    pub partition: Vec<i32>,
    /// Rows that carry a tombstone (their input record had a null value).
    pub null_values: BooleanArray,
    /// Input records that were skipped because they could not be decoded.
    pub decode_errors: Vec<DecodeError>,
    /// Expression failures (the failing expression yields NULL for that row, as in ksqlDB).
    pub expression_errors: Vec<String>,
}

/// A planned stateless query together with its source decoder.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub plan: QueryPlan,
    decoder: SourceDecoder,
    output_schema: SchemaRef,
}

impl Pipeline {
    /// Builds the pipeline of a plan.
    pub fn new(plan: QueryPlan) -> Result<Self> {
        let mut decoder = SourceDecoder::new(&plan.source)?;
        let used = plan
            .filter
            .iter()
            .chain(&plan.projection)
            .flat_map(collect_columns)
            .map(|c| c.index())
            .collect();
        decoder.skip_unused(&used);
        let output_schema = Arc::new(Schema::new(
            plan.output_schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(Pipeline {
            plan,
            decoder,
            output_schema,
        })
    }

    /// The source the pipeline reads.
    pub fn source(&self) -> &Arc<Source> {
        &self.plan.source
    }

    /// The schema of output batches.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Decodes, filters and projects a slice of records.
    pub fn process<R: RecordRef>(&self, records: &[R]) -> Result<ProcessedBatch> {
        let decoded = self.decoder.decode(records)?;
        let mut batch = decoded.batch;
        let mut null_values = decoded.null_values;
        let mask = match &self.plan.filter {
            Some(f) => {
                let value = f.evaluate(&batch).map_err(|e| exec_err!("{e}"))?;
                let mask = value
                    .into_array(batch.num_rows())
                    .map_err(|e| exec_err!("{e}"))?;
                let mask = mask.as_boolean();
                let mask = if mask.null_count() > 0 {
                    prep_null_mask_filter(mask)
                } else {
                    mask.clone()
                };
                Some(and_not(&mask, &null_values).map_err(|e| exec_err!("{e}"))?)
            }
            None => None,
        };
        if let Some(mask) = &mask
            && mask.true_count() != batch.num_rows()
        {
            batch = filter_record_batch(&batch, mask).map_err(|e| exec_err!("{e}"))?;
            null_values = datafusion::arrow::compute::filter(&null_values, mask)
                .map_err(|e| exec_err!("{e}"))?
                .as_boolean()
                .clone();
        }
        let mut expression_errors = Vec::new();
        let columns: Vec<ArrayRef> = self
            .plan
            .projection
            .iter()
            .zip(self.output_schema.fields())
            .map(|(e, f)| evaluate(e, &batch, f, &mut expression_errors))
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
        let rowtime = batch
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .values()
            .to_vec();
        let partition = batch
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
            .values()
            .to_vec();
        debug_assert_eq!(PSEUDO_COLUMNS, 3);
        Ok(ProcessedBatch {
            batch: out,
            rowtime,
            partition,
            null_values,
            decode_errors: decoded.errors,
            expression_errors,
        })
    }
}

/// Evaluates an expression over a batch; if the batch fails, rows are evaluated one by one and the
/// failing ones become NULL (ksqlDB's behaviour for expression errors).
fn evaluate(
    e: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    field: &Field,
    errors: &mut Vec<String>,
) -> Result<ArrayRef> {
    let rows = batch.num_rows();
    let eval = |b: &RecordBatch| e.evaluate(b).and_then(|v| v.into_array(b.num_rows()));
    let array = match eval(batch) {
        Ok(a) => a,
        Err(_) if rows > 0 => {
            let mut parts = Vec::with_capacity(rows);
            for i in 0..rows {
                match eval(&batch.slice(i, 1)) {
                    Ok(a) => parts.push(a),
                    Err(err) => {
                        errors.push(err.to_string());
                        parts.push(new_null_array(field.data_type(), 1));
                    }
                }
            }
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            concat(&refs).map_err(|e| exec_err!("{e}"))?
        }
        Err(err) => return Err(exec_err!("{err}")),
    };
    if array.data_type() != field.data_type() {
        return datafusion::arrow::compute::cast(&array, field.data_type())
            .map_err(|e| exec_err!("{e}"));
    }
    Ok(array)
}

/// Where and how a persistent query writes.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub topic: String,
    pub partitions: i32,
    pub encoder: SinkEncoder,
}

impl SinkSpec {
    /// A sink writing `columns` to `topic` in the given formats.
    pub fn new(
        topic: String,
        partitions: i32,
        columns: &[eddy_sql::catalog::Column],
        key_format: Format,
        value_format: Format,
    ) -> Self {
        SinkSpec {
            topic,
            partitions,
            encoder: SinkEncoder::new(columns, key_format, value_format),
        }
    }

    /// The records to produce for a processed batch: keyed rows go where Kafka's default partitioner
    /// sends their key; unkeyed rows stay in their source partition.
    pub fn records(&self, processed: &ProcessedBatch) -> Result<Vec<Record>> {
        let payloads = self
            .encoder
            .encode(&processed.batch, Some(&processed.null_values))?;
        Ok(payloads
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| {
                let partition = match &key {
                    Some(k) => partition_for(k, self.partitions),
                    None => processed.partition[i].rem_euclid(self.partitions.max(1)),
                };
                Record {
                    key,
                    value,
                    timestamp: processed.rowtime[i],
                    partition,
                    offset: -1,
                }
            })
            .collect())
    }
}
