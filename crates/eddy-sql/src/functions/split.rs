//! ksqlDB's splitting functions: `SPLIT(text, delimiter)` over strings or bytes (an empty delimiter
//! splits into characters or bytes; empty parts are kept), `REGEXP_SPLIT_TO_ARRAY(text, regex)` and
//! `SPLIT_TO_MAP(text, entry_delimiter, key_delimiter)`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility, create_udf,
};

use super::patterns::Patterns;
use super::{rows_of, strings_of};
use crate::types::SqlType;

/// The three functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(Split::default()),
        regexp_split_to_array(),
        split_to_map(),
    ]
}

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", t, true)))
}

/// `SPLIT(STRING, STRING) -> ARRAY<STRING>` and `SPLIT(BYTES, BYTES) -> ARRAY<BYTES>`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Split {
    signature: Signature,
}

impl Default for Split {
    fn default() -> Self {
        Split {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Binary, DataType::Binary]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for Split {
    fn name(&self) -> &str {
        "split"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(list_of(if types.first() == Some(&DataType::Binary) {
            DataType::Binary
        } else {
            DataType::Utf8
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let values = args.args[0].to_array(rows)?;
        let out: ArrayRef = if values.data_type() == &DataType::Binary {
            let delimiters = cast(&args.args[1].to_array(rows)?, &DataType::Binary)?;
            let (values, delimiters) = (values.as_binary::<i32>(), delimiters.as_binary::<i32>());
            let mut out = ListBuilder::new(BinaryBuilder::new());
            for (v, d) in values.iter().zip(delimiters.iter()) {
                match v.zip(d) {
                    Some((v, d)) => {
                        for part in split_bytes(v, d) {
                            out.values().append_value(part);
                        }
                        out.append(true);
                    }
                    None => out.append_null(),
                }
            }
            Arc::new(out.finish())
        } else {
            let values = strings_of(&args.args[0], rows)?;
            let delimiters = strings_of(&args.args[1], rows)?;
            let mut out = ListBuilder::new(StringBuilder::new());
            for (v, d) in values.iter().zip(delimiters.iter()) {
                match v.zip(d) {
                    Some(("", "")) => out.append_value([Some("")]),
                    Some((v, "")) => {
                        let mut buf = [0; 4];
                        for c in v.chars() {
                            out.values().append_value(c.encode_utf8(&mut buf));
                        }
                        out.append(true);
                    }
                    Some((v, d)) => out.append_value(v.split(d).map(Some)),
                    None => out.append_null(),
                }
            }
            Arc::new(out.finish())
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// `bytes` split at each `delimiter`; an empty delimiter gives each byte.
fn split_bytes<'a>(bytes: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    if delimiter.is_empty() && !bytes.is_empty() {
        return bytes.chunks(1).collect();
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while !delimiter.is_empty() && i + delimiter.len() <= bytes.len() {
        if &bytes[i..i + delimiter.len()] == delimiter {
            parts.push(&bytes[start..i]);
            i += delimiter.len();
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(&bytes[start..]);
    parts
}

/// `REGEXP_SPLIT_TO_ARRAY(text, regex) -> ARRAY<STRING>`; NULL when the regex does not compile.
fn regexp_split_to_array() -> ScalarUDF {
    create_udf(
        "regexp_split_to_array",
        vec![DataType::Utf8, DataType::Utf8],
        list_of(DataType::Utf8),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let values = strings_of(&args[0], rows)?;
            let patterns = strings_of(&args[1], rows)?;
            let mut compiled = Patterns::default();
            let mut out = ListBuilder::new(StringBuilder::new());
            for (v, p) in values.iter().zip(patterns.iter()) {
                let (Some(v), Some(p)) = (v, p) else {
                    out.append_null();
                    continue;
                };
                match compiled.get(p) {
                    Some(r) => out.append_value(r.split(v).map(Some)),
                    None => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `SPLIT_TO_MAP(text, entry_delimiter, key_delimiter) -> MAP<STRING, STRING>`: entries without the
/// key delimiter are left out, a repeated key keeps its last value; NULL if a delimiter is empty.
fn split_to_map() -> ScalarUDF {
    create_udf(
        "split_to_map",
        vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
        SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::String)).to_arrow(),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let values = strings_of(&args[0], rows)?;
            let entries = strings_of(&args[1], rows)?;
            let keys = strings_of(&args[2], rows)?;
            let names = MapFieldNames {
                entry: "entries".into(),
                key: "key".into(),
                value: "value".into(),
            };
            let mut out = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
            for i in 0..rows {
                let usable = !values.is_null(i)
                    && !entries.is_null(i)
                    && !keys.is_null(i)
                    && !entries.value(i).is_empty()
                    && !keys.value(i).is_empty();
                if usable {
                    // A repeated key keeps its last value, at the place it first had.
                    let mut map: Vec<(&str, &str)> = Vec::new();
                    let mut seen: HashMap<&str, usize> = HashMap::new();
                    for entry in values.value(i).split(entries.value(i)) {
                        if let Some((k, v)) = entry.split_once(keys.value(i)) {
                            match seen.get(k) {
                                Some(&p) => map[p].1 = v,
                                None => {
                                    seen.insert(k, map.len());
                                    map.push((k, v));
                                }
                            }
                        }
                    }
                    for (k, v) in map {
                        out.keys().append_value(k);
                        out.values().append_value(v);
                    }
                }
                // Appending only fails when keys and values differ in number.
                let _ = out.append(usable);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::split_bytes;

    #[test]
    fn bytes_split_keeps_empty_parts() {
        assert_eq!(split_bytes(b".abc.", b"."), vec![&b""[..], b"abc", b""]);
        assert_eq!(split_bytes(b"a$$b", b"$$"), vec![&b"a"[..], b"b"]);
        assert_eq!(split_bytes(b"ab", b""), vec![&b"a"[..], b"b"]);
        assert_eq!(split_bytes(b"abc", b"x"), vec![&b"abc"[..]]);
    }
}
