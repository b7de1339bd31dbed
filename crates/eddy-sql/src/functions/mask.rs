//! ksqlDB's masking functions: `MASK(s[, upper, lower, digit, other])` and `MASK_KEEP_LEFT`,
//! `MASK_KEEP_RIGHT`, `MASK_LEFT`, `MASK_RIGHT(s, n[, upper, lower, digit, other])`. Upper-case letters
//! become `X`, lower-case `x`, digits `n` and anything else `-` unless other characters are given; a
//! NULL replacement leaves that class as it is. A negative `n` gives NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::{refuse, strings_of};

/// Which characters a function masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Span {
    All,
    KeepLeft,
    KeepRight,
    Left,
    Right,
}

/// One of the five functions.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Mask {
    name: &'static str,
    span: Span,
    signature: Signature,
}

/// The five functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    [
        ("mask", Span::All),
        ("mask_keep_left", Span::KeepLeft),
        ("mask_keep_right", Span::KeepRight),
        ("mask_left", Span::Left),
        ("mask_right", Span::Right),
    ]
    .into_iter()
    .map(|(name, span)| {
        ScalarUDF::from(Mask {
            name,
            span,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    })
    .collect()
}

impl Mask {
    /// Arguments before the replacement characters.
    fn fixed(&self) -> usize {
        if self.span == Span::All { 1 } else { 2 }
    }
}

impl ScalarUDFImpl for Mask {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::Null);
        let fixed = self.fixed();
        let fits = types.len() >= fixed
            && types.len() <= fixed + 4
            && text(&types[0])
            && (fixed == 1 || types[1].is_integer() || types[1] == DataType::Null)
            && types[fixed..].iter().all(text);
        if !fits {
            return Err(refuse(self.name, types));
        }
        let mut coerced = vec![DataType::Utf8; types.len()];
        if fixed == 2 {
            coerced[1] = DataType::Int64;
        }
        Ok(coerced)
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let fixed = self.fixed();
        let texts = strings_of(&args.args[0], rows)?;
        let counts = match fixed {
            2 => Some(args.args[1].to_array(rows)?),
            _ => None,
        };
        let counts = counts.as_ref().map(|c| c.as_primitive::<Int64Type>());
        let replacements: Vec<StringArray> = args.args[fixed..]
            .iter()
            .map(|a| strings_of(a, rows))
            .collect::<Result<_>>()?;
        let mut out = StringBuilder::new();
        let mut masked = String::new();
        for row in 0..rows {
            if texts.is_null(row) {
                out.append_null();
                continue;
            }
            let n = match counts {
                Some(c) if c.is_null(row) || c.value(row) < 0 => {
                    out.append_null();
                    continue;
                }
                Some(c) => usize::try_from(c.value(row)).unwrap_or(usize::MAX),
                None => 0,
            };
            // Upper, lower, digit, other: the given character, the default, or None to keep.
            let defaults = ['X', 'x', 'n', '-'];
            let with: Vec<Option<char>> = (0..4)
                .map(|k| match replacements.get(k) {
                    None => Some(defaults[k]),
                    Some(r) if r.is_null(row) => None,
                    Some(r) => r.value(row).chars().next(),
                })
                .collect();
            let text = texts.value(row);
            let len = text.chars().count();
            masked.clear();
            for (i, c) in text.chars().enumerate() {
                let masks = match self.span {
                    Span::All => true,
                    Span::KeepLeft => i >= n,
                    Span::KeepRight => i + n < len,
                    Span::Left => i < n,
                    Span::Right => i + n >= len,
                };
                let class = if c.is_uppercase() {
                    0
                } else if c.is_lowercase() {
                    1
                } else if c.is_numeric() {
                    2
                } else {
                    3
                };
                masked.push(if masks { with[class].unwrap_or(c) } else { c });
            }
            out.append_value(&masked);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
