//! Pull queries: the rows a materialized table holds now, filtered and projected by a query over the
//! table (key equality and IN, key ranges, window bounds and any other predicate), then limited.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;

use eddy_common::{Result, exec_err, internal_err};
use eddy_sql::catalog::{ROWOFFSET, ROWPARTITION, ROWTIME, WINDOWEND, WINDOWSTART};

use crate::pipeline::Pipeline;

/// A planned pull query over the table another (persistent) query materializes.
#[derive(Debug)]
pub struct PullQuery {
    /// The query over the table's rows.
    pub pipeline: Pipeline,
    /// The pipeline of the query whose state holds the table.
    table: Arc<Pipeline>,
}

impl PullQuery {
    pub fn new(pipeline: Pipeline, table: Arc<Pipeline>) -> Self {
        PullQuery { pipeline, table }
    }

    /// The query's result now.
    pub fn execute(&self) -> Result<RecordBatch> {
        let snapshot = self
            .table
            .snapshot()?
            .ok_or_else(|| internal_err!("the table's query keeps no state"))?;
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
        Ok(match self.pipeline.plan.limit {
            Some(n) if (n as usize) < out.num_rows() => out.slice(0, n as usize),
            _ => out,
        })
    }
}
