//! `SUBSTRING(text, position[, length])` as ksqlDB counts: positions start at 1, a negative position
//! counts from the end, 0 is the start; characters, not bytes.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// Registered as `substring` (in place of DataFusion's alias); the normalizer turns the
/// `SUBSTRING(...)` syntax into a call of it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Substring {
    signature: Signature,
}

impl Default for Substring {
    fn default() -> Self {
        Substring {
            signature: Signature::one_of(
                [DataType::Utf8, DataType::Binary]
                    .into_iter()
                    .flat_map(|text| {
                        [
                            TypeSignature::Exact(vec![text.clone(), DataType::Int64]),
                            TypeSignature::Exact(vec![text, DataType::Int64, DataType::Int64]),
                        ]
                    })
                    .collect(),
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for Substring {
    fn name(&self) -> &str {
        "substring"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts = cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let number = |i: usize| -> Result<Option<_>> {
            args.args
                .get(i)
                .map(|a| cast(&a.to_array(rows)?, &DataType::Int64).map_err(Into::into))
                .transpose()
        };
        let (positions, lengths) = (number(1)?.expect("two or three arguments"), number(2)?);
        let positions = positions.as_primitive::<Int64Type>();
        let lengths = lengths.as_ref().map(|l| l.as_primitive::<Int64Type>());
        let mut out = StringBuilder::with_capacity(rows, texts.value_data().len());
        for i in 0..rows {
            let length = match lengths {
                Some(l) if l.is_null(i) => {
                    out.append_null();
                    continue;
                }
                Some(l) => Some(l.value(i)),
                None => None,
            };
            if texts.is_null(i) || positions.is_null(i) {
                out.append_null();
                continue;
            }
            out.append_value(substring(texts.value(i), positions.value(i), length));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// ksqlDB's SUBSTRING over characters: a slice of `text`, found without walking ASCII text.
pub fn substring(text: &str, position: i64, length: Option<i64>) -> &str {
    let ascii = text.is_ascii();
    let chars = if ascii {
        text.len()
    } else {
        text.chars().count()
    } as i64;
    let start = if position < 0 {
        (chars + position).max(0)
    } else {
        (position - 1).max(0)
    }
    .min(chars);
    let end = match length {
        Some(l) => start.saturating_add(l.max(0)).min(chars),
        None => chars,
    };
    let byte = |n: i64| -> usize {
        if ascii {
            n as usize
        } else {
            text.char_indices()
                .nth(n as usize)
                .map_or(text.len(), |(b, _)| b)
        }
    };
    &text[byte(start)..byte(end)]
}

#[cfg(test)]
mod tests {
    use super::substring;

    #[test]
    fn positions_count_as_ksqldb_counts() {
        assert_eq!(substring("one", 0, Some(1)), "o");
        assert_eq!(substring("one", 1, Some(1)), "o");
        assert_eq!(substring("one", 2, None), "ne");
        assert_eq!(substring("three", -3, Some(2)), "re");
        assert_eq!(substring("three", -10, None), "three");
        assert_eq!(substring("one", 5, Some(2)), "");
        assert_eq!(substring("héllo", 2, Some(3)), "éll");
        assert_eq!(substring("héllo", -2, None), "lo");
        assert_eq!(substring("one", 2, Some(i64::MAX)), "ne");
    }
}
