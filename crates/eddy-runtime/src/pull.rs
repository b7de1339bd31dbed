//! Pull queries: the rows a table holds now, or a stream's records so far, filtered and projected by a
//! query over them (key equality and IN, key ranges, window bounds and any other predicate), then
//! limited. A table an aggregation builds is read from the aggregation's state; any other source is
//! read by the host ([`PullQuery::scan_topic`]): a table from its store (see `table_store`) or its
//! topic, keeping the last record of each key, a stream from its topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{cast, take, take_record_batch};

use datafusion::common::ScalarValue;
use eddy_common::{Result, exec_err, internal_err};
use eddy_sql::catalog::{ROWOFFSET, ROWPARTITION, ROWTIME, WINDOWEND, WINDOWSTART};

use crate::pipeline::{Pipeline, ProcessedBatch, SinkSpec};
use crate::record::{Record, RecordRef};
use eddy_sql::statement::SourceKind;

/// A planned pull query over a source.
#[derive(Debug)]
pub struct PullQuery {
    /// The query over the source's rows.
    pub pipeline: Pipeline,
    /// The pipelines of the query whose state holds the table (one per owned partition when its state
    /// is kept per partition), when an aggregation builds it, with the sink that gives the table's
    /// keys their bytes (rows come in key-bytes order, as from a store).
    table: Option<(Vec<Arc<Pipeline>>, SinkSpec)>,
    /// The key values to look up, when the WHERE pins every key column of a table (rows of values).
    keys: Option<Vec<Vec<ScalarValue>>>,
    /// The shards (partitions) of the table's state whose pipelines `table` holds.
    pub held_shards: Vec<i32>,
}

impl PullQuery {
    pub fn new(pipeline: Pipeline, table: Option<(Vec<Arc<Pipeline>>, SinkSpec)>) -> Self {
        PullQuery {
            pipeline,
            table,
            keys: None,
            held_shards: Vec::new(),
        }
    }

    /// Looks these keys up instead of reading every row of the table.
    pub fn with_keys(mut self, keys: Vec<Vec<ScalarValue>>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Whether the query looks keys up (rather than reading the whole table).
    pub fn looks_up_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// The keys to look up (a value per key column), when the WHERE pins every key column of a
    /// table: a host holding the table in a store hands [`PullQuery::execute_over`] their rows only.
    pub fn lookup_keys(&self) -> Option<&[Vec<ScalarValue>]> {
        self.keys.as_deref()
    }

    /// The topic the host must read to the end and hand to [`PullQuery::execute_over`], when the
    /// source is not an aggregation's state.
    pub fn scan_topic(&self) -> Option<&str> {
        self.table
            .is_none()
            .then_some(self.pipeline.source().topic.as_str())
    }

    /// The query's result over a source's records (every record of its topic so far): a stream's
    /// records in order; a table's latest record per key, in key-bytes order, deleted keys left out.
    pub fn execute_over(&self, records: &[Record]) -> Result<RecordBatch> {
        let input: Vec<&Record> = if self.pipeline.source().kind == SourceKind::Table {
            let mut by_key: BTreeMap<&[u8], &Record> = BTreeMap::new();
            for r in records {
                if let Some(k) = r.key() {
                    by_key.insert(k, r);
                }
            }
            by_key.into_values().filter(|r| r.value.is_some()).collect()
        } else {
            records.iter().filter(|r| r.value.is_some()).collect()
        };
        let out = self.pipeline.process(&input)?.batch;
        Ok(self.limited(out))
    }

    fn limited(&self, out: RecordBatch) -> RecordBatch {
        match self.pipeline.plan.limit {
            Some(n) if (n as usize) < out.num_rows() => out.slice(0, n as usize),
            _ => out,
        }
    }

    /// The query's result now, from the state of the aggregation that builds the table.
    pub fn execute(&self) -> Result<RecordBatch> {
        let (tables, sink) = self.table.as_ref().ok_or_else(|| {
            internal_err!("a pull query over a topic runs with the topic's records")
        })?;
        let mut parts = Vec::with_capacity(tables.len());
        for table in tables {
            let part = match &self.keys {
                Some(keys) => table.snapshot_keys(keys)?,
                None => table.snapshot()?,
            };
            parts.push(part.ok_or_else(|| internal_err!("the table's query keeps no state"))?);
        }
        let snapshot = in_key_order(ProcessedBatch::concat(parts)?, sink)?;
        let schema = self.pipeline.source().input_schema();
        let rows = snapshot.batch.num_rows();
        let bound = |f: fn(&crate::format::window::Bounds) -> i64| -> Result<ArrayRef> {
            let windows = snapshot
                .windows
                .as_ref()
                .ok_or_else(|| internal_err!("a windowed table without windows"))?;
            Ok(Arc::new(Int64Array::from_iter_values(
                windows.iter().map(f),
            )))
        };
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                let column: ArrayRef = match field.name().as_str() {
                    ROWTIME => Arc::new(Int64Array::from(snapshot.rowtime.clone())),
                    ROWPARTITION => Arc::new(Int32Array::from(snapshot.partition.clone())),
                    ROWOFFSET => Arc::new(Int64Array::from(vec![0; rows])),
                    WINDOWSTART => bound(|w| w.start)?,
                    WINDOWEND => bound(|w| w.end)?,
                    name => match snapshot.batch.column_by_name(name) {
                        Some(c) if c.data_type() == field.data_type() => c.clone(),
                        Some(c) => cast(c, field.data_type()).map_err(|e| exec_err!("{e}"))?,
                        None => new_null_array(field.data_type(), rows),
                    },
                };
                Ok(column)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(schema, columns).map_err(|e| exec_err!("{e}"))?;
        let out = self.pipeline.process_rows(batch)?;
        Ok(self.limited(out))
    }
}

/// A table's rows ordered by the bytes of their keys (windowed keys with their window), as a
/// key-value store iterates them.
fn in_key_order(snapshot: ProcessedBatch, sink: &SinkSpec) -> Result<ProcessedBatch> {
    let records = sink.records(&snapshot)?;
    if records.len() != snapshot.batch.num_rows() {
        return Ok(snapshot);
    }
    let mut order: Vec<u32> = (0..records.len() as u32).collect();
    order.sort_by(|a, b| records[*a as usize].key.cmp(&records[*b as usize].key));
    let indices = UInt32Array::from(order.clone());
    let pick = |i: &u32| *i as usize;
    Ok(ProcessedBatch {
        batch: take_record_batch(&snapshot.batch, &indices).map_err(|e| exec_err!("{e}"))?,
        rowtime: order.iter().map(|i| snapshot.rowtime[pick(i)]).collect(),
        partition: order.iter().map(|i| snapshot.partition[pick(i)]).collect(),
        offset: order.iter().map(|i| snapshot.offset[pick(i)]).collect(),
        windows: snapshot
            .windows
            .as_ref()
            .map(|w| order.iter().map(|i| w[pick(i)]).collect()),
        null_values: take(&snapshot.null_values, &indices, None)
            .map_err(|e| exec_err!("{e}"))?
            .as_boolean()
            .clone(),
        ..snapshot
    })
}
