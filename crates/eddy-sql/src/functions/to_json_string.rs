//! `TO_JSON_STRING(value)` as ksqlDB has it: any value as JSON text — a NULL as `null`, BYTES as
//! base64, DATE, TIME and TIMESTAMP as ISO-8601 strings, structs and maps as objects in field order.

use std::fmt::Write;
use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, DecimalType, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, Time32MillisecondType, TimeUnit, TimestampMillisecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// Registered as `to_json_string`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToJsonString {
    signature: Signature,
}

impl Default for ToJsonString {
    fn default() -> Self {
        ToJsonString {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ToJsonString {
    fn name(&self) -> &str {
        "to_json_string"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let values = args.args[0].to_array(rows)?;
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        let mut text = String::new();
        for row in 0..rows {
            text.clear();
            write_json(&mut text, &values, row)?;
            out.append_value(&text);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Appends element `i` of `a` as JSON text.
fn write_json(out: &mut String, a: &ArrayRef, i: usize) -> Result<()> {
    if a.is_null(i) {
        out.push_str("null");
        return Ok(());
    }
    // Writing to a String cannot fail.
    match a.data_type() {
        DataType::Null => out.push_str("null"),
        DataType::Boolean => out.push_str(if a.as_boolean().value(i) {
            "true"
        } else {
            "false"
        }),
        DataType::Int8 => push_number(out, a.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => push_number(out, a.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => push_number(out, a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => push_number(out, a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => push_number(out, a.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => push_number(out, a.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => push_number(out, a.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => push_number(out, a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => push_double(out, f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => push_double(out, a.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal128(p, s) => out.push_str(&Decimal128Type::format_decimal(
            a.as_primitive::<Decimal128Type>().value(i),
            *p,
            *s,
        )),
        DataType::Utf8 => push_string(out, a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => push_string(out, a.as_string::<i64>().value(i)),
        DataType::Utf8View => push_string(out, a.as_string_view().value(i)),
        DataType::Binary => push_string(
            out,
            &base64::engine::general_purpose::STANDARD.encode(a.as_binary::<i32>().value(i)),
        ),
        DataType::Date32 => match a.as_primitive::<Date32Type>().value_as_date(i) {
            Some(d) => push_string(out, &d.format("%Y-%m-%d").to_string()),
            None => out.push_str("null"),
        },
        DataType::Time32(TimeUnit::Millisecond) => {
            let ms = a.as_primitive::<Time32MillisecondType>().value(i);
            push_string(out, &iso_time(ms));
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            match a
                .as_primitive::<TimestampMillisecondType>()
                .value_as_datetime(i)
            {
                Some(t) => push_string(out, &t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()),
                None => out.push_str("null"),
            }
        }
        DataType::List(_) => {
            let items = a.as_list::<i32>().value(i);
            out.push('[');
            for j in 0..items.len() {
                if j > 0 {
                    out.push(',');
                }
                write_json(out, &items, j)?;
            }
            out.push(']');
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            out.push('{');
            for (j, (f, column)) in fields.iter().zip(s.columns()).enumerate() {
                if j > 0 {
                    out.push(',');
                }
                push_string(out, f.name());
                out.push(':');
                write_json(out, column, i)?;
            }
            out.push('}');
        }
        DataType::Map(_, _) => {
            let entries = a.as_map().value(i);
            let (keys, values) = (entries.column(0), entries.column(1));
            out.push('{');
            for j in 0..entries.len() {
                if j > 0 {
                    out.push(',');
                }
                let mut key = String::new();
                write_json(&mut key, keys, j)?;
                match key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                    Some(_) => out.push_str(&key),
                    None => push_string(out, &key),
                }
                out.push(':');
                write_json(out, values, j)?;
            }
            out.push('}');
        }
        other => return exec_err!("TO_JSON_STRING cannot render values of type {other}"),
    }
    Ok(())
}

fn push_number(out: &mut String, n: impl std::fmt::Display) {
    let _ = write!(out, "{n}");
}

/// A DOUBLE as JSON writes it (`1.0`, not `1`); NaN and infinities as strings, which JSON lacks.
fn push_double(out: &mut String, d: f64) {
    if d.is_finite() {
        let _ = write!(out, "{d:?}");
    } else {
        push_string(out, &format!("{d}"));
    }
}

fn push_string(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A time of day in milliseconds as ISO-8601 (`16:43`, `16:43:40`, `16:43:40.123`: seconds and
/// fractions only when not zero).
fn iso_time(ms: i32) -> String {
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    match (s, frac) {
        (0, 0) => format!("{h:02}:{m:02}"),
        (s, 0) => format!("{h:02}:{m:02}:{s:02}"),
        (s, f) => format!("{h:02}:{m:02}:{s:02}.{f:03}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_drop_zero_seconds_as_iso_8601_does() {
        assert_eq!(iso_time(60_220_000), "16:43:40");
        assert_eq!(iso_time(60_180_000), "16:43");
        assert_eq!(iso_time(60_220_123), "16:43:40.123");
    }
}
