//! The aggregation operator: one set of DataFusion accumulators per group, updated record by record so
//! that every input row emits its group's new aggregate row (ksqlDB's EMIT CHANGES with caching off).
//! State is kept in memory.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use eddy_common::{Result, exec_err};
use eddy_sql::aggregate::AggregateSpec;

/// The accumulators of every group seen so far.
#[derive(Debug, Default)]
pub struct AggregateState {
    converter: Option<RowConverter>,
    index: HashMap<OwnedRow, usize>,
    groups: Vec<Group>,
}

#[derive(Debug)]
struct Group {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Whether the group's last row was emitted (it passed HAVING), so that failing HAVING now deletes it.
    emitted: bool,
}

/// What an aggregated row does to the output table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emission {
    Row,
    /// The group stopped passing HAVING: a tombstone for its key.
    Delete,
    /// The group does not pass HAVING and was not in the table: nothing to say.
    Nothing,
}

impl AggregateState {
    /// Folds each row of `batch` (whose group values are `groups`, none of them null) into its group
    /// and returns one aggregated row per input row, in `spec.schema`, with the group of each row.
    pub fn apply(
        &mut self,
        spec: &AggregateSpec,
        batch: &RecordBatch,
        groups: &[ArrayRef],
    ) -> Result<(RecordBatch, Vec<usize>)> {
        let err = |e: datafusion::error::DataFusionError| exec_err!("{e}");
        let rows = batch.num_rows();
        if self.converter.is_none() {
            let fields = groups
                .iter()
                .map(|g| SortField::new(g.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields).map_err(|e| exec_err!("{e}"))?);
        }
        let converter = self.converter.as_ref().expect("set above");
        let keys = converter
            .convert_columns(groups)
            .map_err(|e| exec_err!("{e}"))?;
        let args: Vec<Vec<ArrayRef>> = spec
            .aggregates
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| e.evaluate(batch).and_then(|v| v.into_array(rows)))
                    .collect::<datafusion::error::Result<Vec<_>>>()
            })
            .collect::<datafusion::error::Result<_>>()
            .map_err(err)?;
        let mut results: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(rows); spec.aggregates.len()];
        let mut ids = Vec::with_capacity(rows);
        for i in 0..rows {
            let key = keys.row(i).owned();
            let id = match self.index.get(&key) {
                Some(id) => *id,
                None => {
                    let accumulators = spec
                        .aggregates
                        .iter()
                        .map(|a| a.create_accumulator())
                        .collect::<datafusion::error::Result<Vec<_>>>()
                        .map_err(err)?;
                    self.groups.push(Group {
                        accumulators,
                        emitted: false,
                    });
                    self.index.insert(key, self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            ids.push(id);
            for (j, acc) in self.groups[id].accumulators.iter_mut().enumerate() {
                let row: Vec<ArrayRef> = args[j].iter().map(|a| a.slice(i, 1)).collect();
                acc.update_batch(&row).map_err(err)?;
                results[j].push(acc.evaluate().map_err(err)?);
            }
        }
        let mut columns: Vec<ArrayRef> = groups.to_vec();
        for (j, values) in results.into_iter().enumerate() {
            let field = spec.schema.field(groups.len() + j);
            let array = if values.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values).map_err(err)?
            };
            columns.push(array);
        }
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
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
        Ok((batch, ids))
    }

    /// What each aggregated row (of group `ids[i]`) does to the table, given whether it passes HAVING:
    /// a row that fails deletes its group only if the group's previous row was in the table.
    pub fn emissions(&mut self, ids: &[usize], passes: &[bool]) -> Vec<Emission> {
        ids.iter()
            .zip(passes)
            .map(|(id, pass)| {
                let group = &mut self.groups[*id];
                let emission = match (*pass, group.emitted) {
                    (true, _) => Emission::Row,
                    (false, true) => Emission::Delete,
                    (false, false) => Emission::Nothing,
                };
                group.emitted = *pass;
                emission
            })
            .collect()
    }
}
