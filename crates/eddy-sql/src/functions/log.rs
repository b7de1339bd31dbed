//! `LOG(x)` and `LOG(base, x)` as ksqlDB has them: the natural logarithm, or the logarithm in the
//! given base (`ln(x) / ln(base)`); DataFusion's one-argument `log` is in base 10.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::{overloaded, rows_of};

/// Registered as `log`.
pub fn log() -> ScalarUDF {
    overloaded(
        "log",
        vec![
            vec![DataType::Float64],
            vec![DataType::Float64, DataType::Float64],
        ],
        DataType::Float64,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let numbers = args
                .iter()
                .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Float64)?))
                .collect::<datafusion::common::Result<Vec<_>>>()?;
            let x = numbers[numbers.len() - 1].as_primitive::<Float64Type>();
            let base = (numbers.len() == 2).then(|| numbers[0].as_primitive::<Float64Type>());
            let logs: Float64Array = (0..rows)
                .map(|i| match base {
                    None => (!x.is_null(i)).then(|| x.value(i).ln()),
                    Some(b) => {
                        (!x.is_null(i) && !b.is_null(i)).then(|| x.value(i).ln() / b.value(i).ln())
                    }
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(logs)))
        }),
    )
}
