//! ksqlDB's `LPAD(text, length, padding)` and `RPAD`: the text padded on the left (right) with the
//! padding repeated, or cut, to `length` characters (bytes for BYTES). A negative length, an empty
//! padding or a NULL argument gives NULL, as does a length over [`MAX_LENGTH`].

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BinaryBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// The longest result a call makes, in characters or bytes.
pub const MAX_LENGTH: i64 = 1 << 20;

/// Both functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    [true, false].into_iter().map(pad).collect()
}

/// `units` padded to `length` with `padding` on the left (or right), or cut to it.
fn padded<T: Clone>(units: &[T], length: i64, padding: &[T], left: bool) -> Option<Vec<T>> {
    if !(0..=MAX_LENGTH).contains(&length) || padding.is_empty() {
        return None;
    }
    let length = length as usize;
    if units.len() >= length {
        return Some(units[..length].to_vec());
    }
    let fill = padding.iter().cycle().take(length - units.len()).cloned();
    Some(if left {
        fill.chain(units.iter().cloned()).collect()
    } else {
        units.iter().cloned().chain(fill).collect()
    })
}

fn pad(left: bool) -> ScalarUDF {
    let forms = [DataType::Utf8, DataType::Binary]
        .into_iter()
        .map(|t| TypeSignature::Exact(vec![t.clone(), DataType::Int32, t]))
        .collect();
    ScalarUDF::from(Pad {
        left,
        signature: Signature::one_of(forms, Volatility::Immutable),
    })
}

/// `LPAD` (`left`) or `RPAD`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Pad {
    left: bool,
    signature: Signature,
}

impl ScalarUDFImpl for Pad {
    fn name(&self) -> &str {
        if self.left { "lpad" } else { "rpad" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (rows, left) = (args.number_rows, self.left);
        let values = args.args[0].to_array(rows)?;
        let lengths = cast(&args.args[1].to_array(rows)?, &DataType::Int64)?;
        let lengths = lengths.as_primitive::<Int64Type>();
        let paddings = args.args[2].to_array(rows)?;
        let length = |i: usize| lengths.is_valid(i).then(|| lengths.value(i));
        if values.data_type() == &DataType::Binary {
            let (values, paddings) = (values.as_binary::<i32>(), paddings.as_binary::<i32>());
            let mut out = BinaryBuilder::new();
            for i in 0..rows {
                let v = values.is_valid(i).then(|| values.value(i));
                let p = paddings.is_valid(i).then(|| paddings.value(i));
                out.append_option(
                    v.zip(length(i))
                        .zip(p)
                        .and_then(|((v, n), p)| padded(v, n, p, left)),
                );
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let (values, paddings) = (values.as_string::<i32>(), paddings.as_string::<i32>());
        let mut out = StringBuilder::new();
        for i in 0..rows {
            let v = values.is_valid(i).then(|| values.value(i));
            let p = paddings.is_valid(i).then(|| paddings.value(i));
            out.append_option(v.zip(length(i)).zip(p).and_then(|((v, n), p)| {
                let chars: Vec<char> = v.chars().collect();
                let padding: Vec<char> = p.chars().collect();
                padded(&chars, n, &padding, left).map(|c| c.into_iter().collect::<String>())
            }));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::padded;

    fn text(s: &str, n: i64, p: &str, left: bool) -> Option<String> {
        let (s, p): (Vec<char>, Vec<char>) = (s.chars().collect(), p.chars().collect());
        padded(&s, n, &p, left).map(|c| c.into_iter().collect())
    }

    #[test]
    fn padding_repeats_cuts_and_refuses_what_ksqldb_refuses() {
        assert_eq!(text("foo", 7, "Bar", true).as_deref(), Some("BarBfoo"));
        assert_eq!(text("foo", 7, "Bar", false).as_deref(), Some("fooBarB"));
        assert_eq!(text("foo", 2, "Bar", true).as_deref(), Some("fo"));
        assert_eq!(text("", 7, "Bar", true).as_deref(), Some("BarBarB"));
        assert_eq!(text("foo", -1, "Bar", true), None);
        assert_eq!(text("foo", 7, "", true), None);
        assert_eq!(text("foo", i64::MAX, "x", true), None);
    }
}
