//! Evaluation of a physical expression over a batch, with ksqlDB's rule for rows that fail: NULL.
//! A function that panics on a row's values (ours or DataFusion's) fails that row like an error:
//! a record never takes its query down.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, new_null_array};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use eddy_common::{Result, exec_err};

/// Evaluates an expression over a batch; if the batch fails (or panics), rows are evaluated one by
/// one and the failing ones become NULL (ksqlDB's behaviour for expression errors), their errors
/// collected.
pub(crate) fn evaluate(
    e: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    data_type: &DataType,
    errors: &mut Vec<String>,
) -> Result<ArrayRef> {
    let rows = batch.num_rows();
    let eval = |b: &RecordBatch| -> std::result::Result<ArrayRef, String> {
        let run =
            std::panic::AssertUnwindSafe(|| e.evaluate(b).and_then(|v| v.into_array(b.num_rows())));
        match std::panic::catch_unwind(run) {
            Ok(result) => result.map_err(|err| err.to_string()),
            Err(panic) => Err(format!(
                "a function failed on these values: {}",
                eddy_udf::export::panic_message(panic.as_ref())
            )),
        }
    };
    let array = match eval(batch) {
        Ok(a) => a,
        Err(_) if rows > 0 => {
            let mut parts = Vec::with_capacity(rows);
            for i in 0..rows {
                match eval(&batch.slice(i, 1)) {
                    Ok(a) => parts.push(a),
                    Err(err) => {
                        errors.push(err);
                        parts.push(new_null_array(data_type, 1));
                    }
                }
            }
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            concat(&refs).map_err(|e| exec_err!("{e}"))?
        }
        Err(err) => return Err(exec_err!("{err}")),
    };
    if array.data_type() != data_type {
        return datafusion::arrow::compute::cast(&array, data_type).map_err(|e| exec_err!("{e}"));
    }
    Ok(array)
}
