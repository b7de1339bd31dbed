//! `CHR(code)` as ksqlDB has it: the character of a Unicode code point given as a number, or as a
//! Java escape in a string (`'\u004b'`, a surrogate pair `'\ud820\udeb8'`); NULL for anything else.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// Registered as `chr`, in place of DataFusion's.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Chr {
    signature: Signature,
}

impl Default for Chr {
    fn default() -> Self {
        Chr {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Int64]),
                    TypeSignature::Exact(vec![DataType::Utf8]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for Chr {
    fn name(&self) -> &str {
        "chr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let codes = args.args[0].to_array(rows)?;
        let mut out = StringBuilder::with_capacity(rows, rows * 2);
        let mut append = |c: Option<char>| match c {
            Some(c) => out.append_value(c.encode_utf8(&mut [0; 4])),
            None => out.append_null(),
        };
        if codes.data_type() == &DataType::Utf8 {
            let texts = codes.as_string::<i32>();
            for i in 0..rows {
                append(
                    (!texts.is_null(i))
                        .then(|| unescape(texts.value(i)))
                        .flatten(),
                );
            }
        } else {
            let numbers = cast(&codes, &DataType::Int64)?;
            let numbers = numbers.as_primitive::<Int64Type>();
            for i in 0..rows {
                let code = (!numbers.is_null(i)).then(|| numbers.value(i));
                append(code.and_then(|n| char::from_u32(u32::try_from(n).ok()?)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The character a Java escape spells: `\uXXXX`, or two of them forming a surrogate pair.
fn unescape(text: &str) -> Option<char> {
    let units: Vec<u16> = text
        .split("\\u")
        .skip(1)
        .map(|h| {
            (h.len() == 4)
                .then(|| u16::from_str_radix(h, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    if units.is_empty() || units.len() > 2 || !text.starts_with("\\u") {
        return None;
    }
    let mut chars = char::decode_utf16(units);
    let c = chars.next()?.ok()?;
    chars.next().is_none().then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_escapes_spell_one_character() {
        assert_eq!(unescape("\\u004b"), Some('K'));
        assert_eq!(unescape("\\u597d"), Some('好'));
        assert_eq!(unescape("\\ud820\\udeb8"), Some('𘊸'));
        for bad in [
            "75",
            "004b",
            "bogus",
            "",
            "\\u12",
            "\\ud820",
            "\\u004b\\u004b",
            "x\\u004b",
        ] {
            assert_eq!(unescape(bad), None, "{bad}");
        }
    }
}
