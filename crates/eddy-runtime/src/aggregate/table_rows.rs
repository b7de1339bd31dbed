//! Aggregating a table: each key's current row is remembered with its aggregate arguments, and a
//! change takes the old row out of its group (DataFusion's `retract_batch`) before adding the new one;
//! the old group emits first when the group changed, and a deletion only takes the row out.

use datafusion::common::ScalarValue;

use eddy_common::Result;

use super::{AggregateState, Aggregation, BatchRows, DfResult, Fold, converter_for, df};

/// The aggregation of a table's rows.
#[derive(Debug)]
pub(super) struct TableRows;

impl Aggregation for TableRows {
    fn fold(
        &self,
        state: &mut AggregateState,
        rows: &BatchRows<'_>,
        fold: &mut Fold,
    ) -> Result<()> {
        let Some(columns) = &state.table_keys else {
            return Ok(());
        };
        let columns: Vec<_> = columns
            .iter()
            .map(|c| rows.batch.column(*c).clone())
            .collect();
        let converter = converter_for(&mut state.table_converter, &columns)?;
        let table_keys = converter.convert_columns(&columns).map_err(df)?;
        for i in 0..rows.len() {
            let (ts, partition, offset) = rows.position(i);
            let new = (!rows.null_values.value(i) && rows.grouped(i))
                .then(|| state.group(rows.key(i), None))
                .transpose()?;
            let source_key = table_keys.row(i);
            if state.row_covered(source_key.as_ref(), partition, offset) {
                continue;
            }
            state.log_row(source_key.as_ref());
            if let Some((old, old_args)) = state.table_rows.remove(source_key.as_ref()) {
                if !state.covered(old, partition, offset) {
                    state.retract(old, &old_args)?;
                }
                if Some(old) != new {
                    state.note(old, ts, partition);
                    state.changed(old, ts, &mut fold.outs)?;
                }
            }
            if let Some(group) = new {
                state.note(group, ts, partition);
                if !state.covered(group, partition, offset) {
                    state.update(group, rows.args, i, 1);
                }
                state.changed(group, ts, &mut fold.outs)?;
                let row_args = rows
                    .args
                    .iter()
                    .map(|a| {
                        a.iter()
                            .map(|c| ScalarValue::try_from_array(c, i))
                            .collect::<DfResult<Vec<_>>>()
                    })
                    .collect::<DfResult<_>>()
                    .map_err(df)?;
                state
                    .table_rows
                    .insert(source_key.as_ref().into(), (group, row_args));
            }
        }
        Ok(())
    }
}
