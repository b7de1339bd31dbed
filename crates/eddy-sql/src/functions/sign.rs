//! `SIGN(number) -> INT` as ksqlDB has it: -1, 0 or 1 (a NaN is 0), for any numeric type.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility};

use super::rows_of;

/// Registered as `sign`.
pub fn sign() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "sign",
        Signature::uniform(1, vec![DataType::Float64], Volatility::Immutable),
        DataType::Int32,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let numbers = cast(&args[0].to_array(rows)?, &DataType::Float64)?;
            let numbers = numbers.as_primitive::<Float64Type>();
            let signs: Int32Array = (0..numbers.len())
                .map(|i| {
                    (!numbers.is_null(i)).then(|| {
                        let n = numbers.value(i);
                        if n > 0.0 {
                            1
                        } else if n < 0.0 {
                            -1
                        } else {
                            0
                        }
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(signs)))
        }),
    ))
}
