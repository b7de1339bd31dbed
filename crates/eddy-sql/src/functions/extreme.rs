//! `GREATEST(v, ...)` and `LEAST(v, ...)` as ksqlDB resolves them: NULLs are skipped; the values are
//! all INTs, all BIGINTs, numbers with a DOUBLE among them (compared as DOUBLEs), DECIMALs (widened to
//! hold each), strings, BYTES, or DATE/TIME/TIMESTAMP values with strings read as such. An INT beside
//! a BIGINT is ambiguous, as in ksqlDB; numbers beside strings are refused.

use datafusion::arrow::array::{ArrayRef, BooleanArray, new_null_array};
use datafusion::arrow::compute::kernels::cmp::{gt, lt};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{and_not, is_null, or};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::refuse;
use crate::types::SqlType;

/// `GREATEST` or `LEAST`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Extreme {
    greatest: bool,
    signature: Signature,
}

/// Both functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    [true, false]
        .into_iter()
        .map(|greatest| {
            ScalarUDF::from(Extreme {
                greatest,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

impl Extreme {
    /// The one type every argument is compared as.
    fn common_type(&self, types: &[DataType]) -> Result<DataType> {
        let known: Vec<&DataType> = types.iter().filter(|t| **t != DataType::Null).collect();
        let ambiguous = || {
            let names: Vec<String> = types
                .iter()
                .map(|t| match SqlType::from_arrow(t) {
                    _ if *t == DataType::Null => "null".to_string(),
                    Ok(sql) => sql.to_string(),
                    Err(_) => t.to_string(),
                })
                .collect();
            DataFusionError::Plan(format!(
                "Function '{}' cannot be resolved due to ambiguous method parameters ({}).",
                self.name(),
                names.join(", ")
            ))
        };
        let Some(first) = known.first() else {
            return Err(if types.is_empty() {
                refuse(self.name(), types)
            } else {
                ambiguous()
            });
        };
        let all = |f: &dyn Fn(&DataType) -> bool| known.iter().all(|t| f(t));
        let is_string = |t: &DataType| matches!(t, DataType::Utf8);
        let is_temporal = |t: &DataType| {
            matches!(
                t,
                DataType::Date32 | DataType::Time32(_) | DataType::Timestamp(_, _)
            )
        };
        if known.iter().all(|t| t == first) {
            return Ok((*first).clone());
        }
        if all(&|t| t.is_numeric()) {
            if known.contains(&&DataType::Float64) {
                return Ok(DataType::Float64);
            }
            if all(&|t| matches!(t, DataType::Decimal128(_, _))) {
                let (mut digits, mut scale) = (0i8, 0i8);
                for t in &known {
                    if let DataType::Decimal128(p, s) = t {
                        digits = digits.max(*p as i8 - *s);
                        scale = scale.max(*s);
                    }
                }
                return Ok(DataType::Decimal128(
                    (digits + scale).clamp(1, 38) as u8,
                    scale,
                ));
            }
            return Err(ambiguous());
        }
        // Strings beside one temporal type are read as that type.
        let temporal: Vec<&&DataType> = known.iter().filter(|t| is_temporal(t)).collect();
        if let Some(t) = temporal.first()
            && temporal.iter().all(|u| u == t)
            && all(&|u| is_string(u) || is_temporal(u))
        {
            return Ok((**t).clone());
        }
        Err(refuse(self.name(), types))
    }
}

impl ScalarUDFImpl for Extreme {
    fn name(&self) -> &str {
        if self.greatest { "greatest" } else { "least" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let t = self.common_type(types)?;
        Ok(vec![t; types.len()])
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        self.common_type(types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let t = args.return_field.data_type().clone();
        let mut best: ArrayRef = new_null_array(&t, rows);
        for a in &args.args {
            let a = a.to_array(rows)?;
            let better = if self.greatest {
                gt(&a, &best)?
            } else {
                lt(&a, &best)?
            };
            // Where the best so far is NULL, any value is better; a NULL never is. (The comparison's
            // values where either side is NULL are thus never used.)
            let better = BooleanArray::new(better.values().clone(), None);
            let take = and_not(&or(&better, &is_null(&best)?)?, &is_null(&a)?)?;
            best = zip(&take, &a, &best)?;
        }
        Ok(ColumnarValue::Array(best))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int32Array};
    use datafusion::arrow::datatypes::{Field, Int32Type};
    use datafusion::common::config::ConfigOptions;

    #[test]
    fn nulls_are_skipped_and_the_extreme_kept() {
        let f = &all()[0];
        let a: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, None]));
        let b: ArrayRef = Arc::new(Int32Array::from(vec![Some(3), Some(2), None]));
        let c: ArrayRef = Arc::new(Int32Array::from(vec![Some(0), Some(7), None, Some(5)]));
        let d: ArrayRef = Arc::new(Int32Array::from(vec![Some(0), Some(9), None, Some(2)]));
        let one = f
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![
                    ColumnarValue::Array(c.slice(3, 1)),
                    ColumnarValue::Array(d.slice(3, 1)),
                ],
                arg_fields: vec![],
                number_rows: 1,
                return_field: Arc::new(Field::new("x", DataType::Int32, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap()
            .to_array(1)
            .unwrap();
        assert_eq!(one.as_primitive::<Int32Type>().value(0), 5);
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(a), ColumnarValue::Array(b)],
                arg_fields: vec![],
                number_rows: 3,
                return_field: Arc::new(Field::new("x", DataType::Int32, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap()
            .to_array(3)
            .unwrap();
        let out = out.as_primitive::<Int32Type>();
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![Some(3), Some(2), None]);
    }
}
