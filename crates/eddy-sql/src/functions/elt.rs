//! ksqlDB's lookups in a list of strings given as arguments: `ELT(n, s1, s2, ...)`, the n-th string
//! (from 1; NULL out of range), and `FIELD(s, s1, s2, ...)`, the position of `s` among them (0 when
//! absent or NULL).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int32Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::{refuse, strings_of};

/// `ELT` (`elt`) or `FIELD`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Lookup {
    elt: bool,
    signature: Signature,
}

/// Both functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    [true, false]
        .into_iter()
        .map(|elt| {
            ScalarUDF::from(Lookup {
                elt,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

impl ScalarUDFImpl for Lookup {
    fn name(&self) -> &str {
        if self.elt { "elt" } else { "field" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::Null);
        let first_fits = if self.elt {
            types
                .first()
                .is_some_and(|t| t.is_integer() || *t == DataType::Null)
        } else {
            types.first().is_some_and(text)
        };
        if types.len() < 2 || !first_fits || !types[1..].iter().all(text) {
            return Err(refuse(self.name(), types));
        }
        let mut coerced = vec![DataType::Utf8; types.len()];
        if self.elt {
            coerced[0] = DataType::Int64;
        }
        Ok(coerced)
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(if self.elt {
            DataType::Utf8
        } else {
            DataType::Int32
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts = args.args[1..]
            .iter()
            .map(|a| strings_of(a, rows))
            .collect::<Result<Vec<_>>>()?;
        if self.elt {
            let n = args.args[0].to_array(rows)?;
            let n = n.as_primitive::<Int64Type>();
            let mut out = StringBuilder::new();
            for row in 0..rows {
                let picked = (!n.is_null(row))
                    .then(|| usize::try_from(n.value(row)).ok()?.checked_sub(1))
                    .flatten()
                    .and_then(|i| texts.get(i))
                    .filter(|t| !t.is_null(row))
                    .map(|t| t.value(row));
                out.append_option(picked);
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let wanted = strings_of(&args.args[0], rows)?;
        let mut out = Int32Builder::with_capacity(rows);
        for row in 0..rows {
            let at = (!wanted.is_null(row))
                .then(|| {
                    texts
                        .iter()
                        .position(|t| !t.is_null(row) && t.value(row) == wanted.value(row))
                })
                .flatten();
            out.append_value(at.map_or(0, |p| i32::try_from(p + 1).unwrap_or(0)));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
