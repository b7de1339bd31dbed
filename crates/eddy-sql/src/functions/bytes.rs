//! ksqlDB's functions between BYTES and other types: `TO_BYTES(text, encoding)`,
//! `FROM_BYTES(bytes, encoding)`, `ENCODE(text, from, to)` over the encodings `hex`, `utf8`, `ascii`
//! and `base64`, and `INT_FROM_BYTES` / `BIGINT_FROM_BYTES` / `DOUBLE_FROM_BYTES(bytes[, byte order])`.
//! Text that does not decode, a wrong length or an unknown encoding gives NULL.

use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use super::{overloaded, rows_of, strings_of};

/// The functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    let mut all = vec![
        create_udf(
            "to_bytes",
            vec![DataType::Utf8, DataType::Utf8],
            DataType::Binary,
            Volatility::Immutable,
            Arc::new(|args: &[ColumnarValue]| {
                let rows = rows_of(args);
                let texts = strings_of(&args[0], rows)?;
                let encodings = strings_of(&args[1], rows)?;
                let mut out = BinaryBuilder::new();
                for (t, e) in texts.iter().zip(encodings.iter()) {
                    out.append_option(t.zip(e).and_then(|(t, e)| decode(t, e)));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }),
        ),
        create_udf(
            "from_bytes",
            vec![DataType::Binary, DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(|args: &[ColumnarValue]| {
                let rows = rows_of(args);
                let bytes = args[0].to_array(rows)?;
                let encodings = strings_of(&args[1], rows)?;
                let mut out = StringBuilder::new();
                for (b, e) in bytes.as_binary::<i32>().iter().zip(encodings.iter()) {
                    out.append_option(b.zip(e).and_then(|(b, e)| encode(b, e, true)));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }),
        ),
        create_udf(
            "encode",
            vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(|args: &[ColumnarValue]| {
                let rows = rows_of(args);
                let texts = strings_of(&args[0], rows)?;
                let from = strings_of(&args[1], rows)?;
                let to = strings_of(&args[2], rows)?;
                let mut out = StringBuilder::new();
                for i in 0..rows {
                    let row = (!texts.is_null(i) && !from.is_null(i) && !to.is_null(i))
                        .then(|| decode(texts.value(i), from.value(i)))
                        .flatten()
                        .and_then(|b| encode(&b, to.value(i), false));
                    out.append_option(row);
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }),
        ),
    ];
    for (name, ret) in [
        ("int_from_bytes", DataType::Int32),
        ("bigint_from_bytes", DataType::Int64),
        ("double_from_bytes", DataType::Float64),
    ] {
        all.push(number_from_bytes(name, ret));
    }
    all
}

/// `INT_FROM_BYTES` and its kin: a number from exactly its size in bytes, big-endian unless the
/// second argument says `LITTLE_ENDIAN`.
fn number_from_bytes(name: &str, ret: DataType) -> ScalarUDF {
    let ret_type = ret.clone();
    overloaded(
        name,
        vec![
            vec![DataType::Binary],
            vec![DataType::Binary, DataType::Utf8],
        ],
        ret,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let bytes = args[0].to_array(rows)?;
            let bytes = bytes.as_binary::<i32>();
            let orders = args.get(1).map(|o| strings_of(o, rows)).transpose()?;
            let little = |i: usize| match &orders {
                None => Some(false),
                Some(o) if o.is_null(i) => None,
                Some(o) => match o.value(i).to_ascii_uppercase().as_str() {
                    "BIG_ENDIAN" => Some(false),
                    "LITTLE_ENDIAN" => Some(true),
                    _ => None,
                },
            };
            let fixed = |i: usize| -> Option<[u8; 8]> {
                let b = (!bytes.is_null(i)).then(|| bytes.value(i))?;
                let size = if ret_type == DataType::Int32 { 4 } else { 8 };
                if b.len() != size {
                    return None;
                }
                let mut be = [0u8; 8];
                be[8 - size..].copy_from_slice(b);
                if little(i)? {
                    be[8 - size..].reverse();
                }
                Some(be)
            };
            let out: ArrayRef = match ret_type {
                DataType::Int32 => {
                    let mut out = Int32Builder::with_capacity(rows);
                    for i in 0..rows {
                        out.append_option(fixed(i).map(|b| i64::from_be_bytes(b) as i32));
                    }
                    Arc::new(out.finish())
                }
                DataType::Int64 => {
                    let mut out = Int64Builder::with_capacity(rows);
                    for i in 0..rows {
                        out.append_option(fixed(i).map(i64::from_be_bytes));
                    }
                    Arc::new(out.finish())
                }
                _ => {
                    let mut out = Float64Builder::with_capacity(rows);
                    for i in 0..rows {
                        out.append_option(fixed(i).map(f64::from_be_bytes));
                    }
                    Arc::new(out.finish())
                }
            };
            Ok(ColumnarValue::Array(out))
        }),
    )
}

/// Text in an encoding as bytes: `hex` (either case), `utf8`, `ascii` (other characters become `?`),
/// `base64`.
fn decode(text: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding.to_ascii_lowercase().as_str() {
        "hex" => {
            // `0x...` may have an odd number of digits (a leading zero is implied); `X'...'` and
            // bare digits may not.
            let (digits, pad) = if let Some(d) = text.strip_prefix("0x") {
                (d, d.len() % 2)
            } else if let Some(d) = text.strip_prefix("X'").or_else(|| text.strip_prefix("x'")) {
                (d.strip_suffix('\'')?, 0)
            } else {
                (text, 0)
            };
            if (digits.len() + pad) % 2 != 0 {
                return None;
            }
            let padded = format!("{}{digits}", "0".repeat(pad));
            padded
                .as_bytes()
                .chunks(2)
                .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                .collect()
        }
        "utf8" => Some(text.as_bytes().to_vec()),
        "ascii" => Some(
            text.chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
        ),
        "base64" => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        _ => None,
    }
}

/// Bytes as text in an encoding: `hex` (upper case for `FROM_BYTES`, lower for `ENCODE`), `utf8` and
/// `ascii` (undecodable bytes become U+FFFD), `base64`.
fn encode(bytes: &[u8], encoding: &str, upper: bool) -> Option<String> {
    match encoding.to_ascii_lowercase().as_str() {
        "hex" if upper => Some(bytes.iter().map(|b| format!("{b:02X}")).collect()),
        "hex" => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        "utf8" => Some(String::from_utf8_lossy(bytes).into_owned()),
        "ascii" => Some(
            bytes
                .iter()
                .map(|&b| if b.is_ascii() { b as char } else { '\u{FFFD}' })
                .collect(),
        ),
        "base64" => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        assert_eq!(decode("1aB2", "hex"), Some(vec![0x1a, 0xb2]));
        assert_eq!(encode(&[0x1a, 0xb2], "hex", true).as_deref(), Some("1AB2"));
        assert_eq!(encode(&[0x1a, 0xb2], "hex", false).as_deref(), Some("1ab2"));
        assert_eq!(decode("abc", "hex"), None);
        assert_eq!(decode("0xabc", "hex"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode("X'0abc'", "hex"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode("x'abc'", "hex"), None);
        assert_eq!(decode("x'0abc", "hex"), None);
        assert_eq!(decode("Ελ", "ascii"), Some(b"??".to_vec()));
        assert_eq!(
            encode(&[0xce, 0x41], "ascii", true).as_deref(),
            Some("\u{FFFD}A")
        );
        assert_eq!(decode("IQ==", "base64"), Some(b"!".to_vec()));
        assert_eq!(encode(b"!", "nope", true), None);
    }
}
