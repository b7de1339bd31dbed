//! Column builders: decoded field values ([`Cell`]s) are checked against the column's SQL type, then
//! appended to Arrow builders. Checking first keeps the builders of a batch aligned when a record fails.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int32Builder, Int64Builder, StringBuilder, Time32MillisecondBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{Field, Schema};
use serde_json::Value;

use eddy_sql::SqlType;
use eddy_sql::java::format_double;

/// One field value as a decoder found it, before it is checked against the column type.
#[derive(Debug, Clone)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A number kept as text (JSON numbers too large for i64/f64 and decimals).
    Number(Cow<'a, str>),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    /// A nested JSON value (array, object), boxed to keep cells small.
    Json(Box<Value>),
    /// An exact decimal, already scaled to the column's scale.
    Decimal(i128),
}

/// Builds one Arrow column from checked cells.
pub enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int(Int32Builder),
    Bigint(Int64Builder),
    Double(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Str(StringBuilder),
    Bytes(BinaryBuilder),
    Timestamp(TimestampMillisecondBuilder),
    Date(Date32Builder),
    Time(Time32MillisecondBuilder),
    /// Arrays, maps and structs: JSON values converted at the end of the batch.
    Nested(SqlType, Vec<Value>),
}

impl ColumnBuilder {
    /// A builder for a column of `t`.
    pub fn new(t: &SqlType, capacity: usize) -> Self {
        match t {
            SqlType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            SqlType::Int => ColumnBuilder::Int(Int32Builder::with_capacity(capacity)),
            SqlType::Bigint => ColumnBuilder::Bigint(Int64Builder::with_capacity(capacity)),
            SqlType::Double => ColumnBuilder::Double(Float64Builder::with_capacity(capacity)),
            SqlType::Decimal { precision, scale } => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(*precision, *scale)
                    .expect("precision and scale were validated by the parser"),
                *precision,
                *scale,
            ),
            SqlType::String => {
                ColumnBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            SqlType::Bytes => {
                ColumnBuilder::Bytes(BinaryBuilder::with_capacity(capacity, capacity * 16))
            }
            SqlType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMillisecondBuilder::with_capacity(capacity))
            }
            SqlType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            SqlType::Time => ColumnBuilder::Time(Time32MillisecondBuilder::with_capacity(capacity)),
            nested => ColumnBuilder::Nested(nested.clone(), Vec::with_capacity(capacity)),
        }
    }

    /// Checks a cell against the column type and converts it to the form `append` takes.
    pub fn check<'a>(&self, cell: Cell<'a>) -> Result<Cell<'a>, String> {
        if matches!(cell, Cell::Null) {
            return Ok(Cell::Null);
        }
        match self {
            ColumnBuilder::Bool(_) => match cell {
                Cell::Bool(_) => Ok(cell),
                Cell::Str(s) if s.eq_ignore_ascii_case("true") => Ok(Cell::Bool(true)),
                Cell::Str(s) if s.eq_ignore_ascii_case("false") => Ok(Cell::Bool(false)),
                other => Err(mismatch(&other, "BOOLEAN")),
            },
            ColumnBuilder::Int(_) | ColumnBuilder::Date(_) | ColumnBuilder::Time(_) => {
                let v = to_i64(cell, "INTEGER")?;
                i32::try_from(v)
                    .map(|_| Cell::Int(v))
                    .map_err(|_| format!("Value {v} is out of range for INTEGER"))
            }
            ColumnBuilder::Bigint(_) | ColumnBuilder::Timestamp(_) => {
                Ok(Cell::Int(to_i64(cell, "BIGINT")?))
            }
            ColumnBuilder::Double(_) => match cell {
                Cell::Float(_) => Ok(cell),
                Cell::Int(i) => Ok(Cell::Float(i as f64)),
                Cell::Number(s) | Cell::Str(s) => s
                    .trim()
                    .parse::<f64>()
                    .map(Cell::Float)
                    .map_err(|_| format!("Can't convert '{s}' to DOUBLE")),
                other => Err(mismatch(&other, "DOUBLE")),
            },
            ColumnBuilder::Decimal(_, precision, scale) => {
                let text: Cow<'_, str> = match cell {
                    Cell::Int(i) => i.to_string().into(),
                    Cell::Float(f) => f.to_string().into(),
                    Cell::Number(s) | Cell::Str(s) => s,
                    Cell::Decimal(_) => return Ok(cell),
                    other => return Err(mismatch(&other, "DECIMAL")),
                };
                parse_decimal(&text, *precision, *scale).map(Cell::Decimal)
            }
            ColumnBuilder::Str(_) => Ok(match cell {
                Cell::Str(_) => cell,
                Cell::Bool(b) => Cell::Str(b.to_string().into()),
                Cell::Int(i) => Cell::Str(i.to_string().into()),
                Cell::Float(f) => Cell::Str(format_double(f).into()),
                Cell::Number(s) => Cell::Str(s),
                Cell::Json(v) => Cell::Str(v.to_string().into()),
                Cell::Bytes(b) => Cell::Str(String::from_utf8_lossy(&b).into_owned().into()),
                Cell::Decimal(d) => Cell::Str(d.to_string().into()),
                Cell::Null => Cell::Null,
            }),
            ColumnBuilder::Bytes(_) => match cell {
                Cell::Bytes(_) => Ok(cell),
                Cell::Str(s) => {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(s.as_bytes())
                        .map(|b| Cell::Bytes(b.into()))
                        .map_err(|_| format!("Can't convert '{s}' to BYTES: not base64"))
                }
                other => Err(mismatch(&other, "BYTES")),
            },
            ColumnBuilder::Nested(t, _) => {
                let v = match cell {
                    Cell::Json(v) => *v,
                    Cell::Str(s) => serde_json::from_str(&s)
                        .map_err(|_| format!("Can't convert '{s}' to {t}"))?,
                    other => return Err(mismatch(&other, t.kind_name())),
                };
                conform(v, t).map(|v| Cell::Json(Box::new(v)))
            }
        }
    }

    /// Appends a cell returned by [`check`](Self::check).
    pub fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (ColumnBuilder::Bool(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Int(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Bigint(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Double(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Decimal(b, _, _), Cell::Null) => b.append_null(),
            (ColumnBuilder::Str(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Bytes(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Date(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Time(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Nested(_, v), Cell::Null) => v.push(Value::Null),
            (ColumnBuilder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (ColumnBuilder::Int(b), Cell::Int(v)) => b.append_value(v as i32),
            (ColumnBuilder::Date(b), Cell::Int(v)) => b.append_value(v as i32),
            (ColumnBuilder::Time(b), Cell::Int(v)) => b.append_value(v as i32),
            (ColumnBuilder::Bigint(b), Cell::Int(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), Cell::Int(v)) => b.append_value(v),
            (ColumnBuilder::Double(b), Cell::Float(v)) => b.append_value(v),
            (ColumnBuilder::Decimal(b, _, _), Cell::Decimal(v)) => b.append_value(v),
            (ColumnBuilder::Str(b), Cell::Str(v)) => b.append_value(v),
            (ColumnBuilder::Bytes(b), Cell::Bytes(v)) => b.append_value(v),
            (ColumnBuilder::Nested(_, b), Cell::Json(v)) => b.push(*v),
            (_, cell) => unreachable!("append of an unchecked cell {cell:?}"),
        }
    }

    /// Finishes the column.
    pub fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Bigint(b) => Arc::new(b.finish()),
            ColumnBuilder::Double(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| e.to_string())?,
            ),
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
            ColumnBuilder::Bytes(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
            ColumnBuilder::Nested(t, values) => nested_array(t, std::mem::take(values))?,
        })
    }
}

fn mismatch(cell: &Cell<'_>, required: &str) -> String {
    let found = match cell {
        Cell::Null => "NULL",
        Cell::Bool(_) => "BOOLEAN",
        Cell::Int(_) => "INTEGER",
        Cell::Float(_) | Cell::Number(_) | Cell::Decimal(_) => "NUMBER",
        Cell::Str(_) => "STRING",
        Cell::Bytes(_) => "BYTES",
        Cell::Json(v) if v.is_array() => "ARRAY",
        Cell::Json(v) if v.is_object() => "OBJECT",
        Cell::Json(_) => "JSON",
    };
    format!("Can't convert type. sourceType: {found}, requiredType: {required}")
}

fn to_i64(cell: Cell<'_>, required: &str) -> Result<i64, String> {
    match cell {
        Cell::Int(i) => Ok(i),
        Cell::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
        Cell::Number(s) | Cell::Str(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("Can't convert '{s}' to {required}")),
        other => Err(mismatch(&other, required)),
    }
}

/// Parses a decimal literal to an i128 at `scale`, rounding half up, checking the precision.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match digits.find(['e', 'E']) {
        Some(i) => (
            &digits[..i],
            digits[i + 1..]
                .parse::<i32>()
                .map_err(|_| format!("Can't convert '{t}' to DECIMAL"))?,
        ),
        None => (digits, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .chars()
            .chain(frac_part.chars())
            .all(|c| c.is_ascii_digit())
    {
        return Err(format!("Can't convert '{t}' to DECIMAL"));
    }
    let all: String = format!("{int_part}{frac_part}");
    let point = int_part.len() as i32 + exp;
    let want = point + scale as i32;
    let mut value: i128 = 0;
    let mut round_up = false;
    for (i, c) in all.chars().enumerate() {
        let d = (c as u8 - b'0') as i128;
        if (i as i32) < want {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(d))
                .ok_or_else(|| format!("'{t}' is too large"))?;
        } else if i as i32 == want {
            round_up = d >= 5;
        }
    }
    for _ in (all.len() as i32)..want {
        value = value
            .checked_mul(10)
            .ok_or_else(|| format!("'{t}' is too large"))?;
    }
    if round_up {
        value += 1;
    }
    if value >= 10i128.pow(precision as u32) {
        return Err(format!(
            "Numeric field overflow: '{t}' does not fit DECIMAL({precision}, {scale})"
        ));
    }
    Ok(if neg { -value } else { value })
}

/// Normalizes a nested JSON value to a type: struct fields matched case-insensitively and renamed to the
/// declared names, numbers checked.
fn conform(v: Value, t: &SqlType) -> Result<Value, String> {
    match (t, v) {
        (_, Value::Null) => Ok(Value::Null),
        (SqlType::Array(e), Value::Array(items)) => items
            .into_iter()
            .map(|i| conform(i, e))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        (SqlType::Map(_, vt), Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| conform(v, vt).map(|v| (k, v)))
            .collect::<Result<_, _>>()
            .map(Value::Object),
        (SqlType::Struct(fields), Value::Object(mut m)) => {
            let mut out = serde_json::Map::new();
            for (name, ft) in fields {
                let found = match m.remove(name) {
                    Some(v) => Some(v),
                    None => {
                        let key = m.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
                        key.and_then(|k| m.remove(&k))
                    }
                };
                out.insert(name.clone(), conform(found.unwrap_or(Value::Null), ft)?);
            }
            Ok(Value::Object(out))
        }
        (SqlType::String, Value::String(s)) => Ok(Value::String(s)),
        (SqlType::String, other) => Ok(Value::String(other.to_string())),
        (
            SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::Decimal { .. },
            v @ Value::Number(_),
        ) => Ok(v),
        (SqlType::Int | SqlType::Bigint | SqlType::Double, Value::String(s)) => {
            s.trim()
                .parse::<f64>()
                .map_err(|_| format!("Can't convert '{s}' to {t}"))?;
            Ok(serde_json::from_str(s.trim()).unwrap_or(Value::String(s)))
        }
        (SqlType::Boolean, v @ Value::Bool(_)) => Ok(v),
        (SqlType::Boolean, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("Can't convert '{s}' to BOOLEAN")),
        },
        (SqlType::Bytes | SqlType::Timestamp | SqlType::Date | SqlType::Time, v) => Ok(v),
        (t, v) => Err(format!("Can't convert {v} to {t}")),
    }
}

/// Converts conformed JSON values to an Arrow array of a nested type.
fn nested_array(t: &SqlType, values: Vec<Value>) -> Result<ArrayRef, String> {
    let field = Arc::new(Field::new("v", t.to_arrow(), true));
    let schema = Arc::new(Schema::new(vec![field]));
    let mut decoder = arrow_json::ReaderBuilder::new(schema)
        .with_batch_size(values.len().max(1))
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let rows: Vec<Value> = values
        .into_iter()
        .map(|v| serde_json::json!({ "v": v }))
        .collect();
    decoder.serialize(&rows).map_err(|e| e.to_string())?;
    let batch = decoder.flush().map_err(|e| e.to_string())?;
    match batch {
        Some(b) => Ok(b.column(0).clone()),
        None => Ok(datafusion::arrow::array::new_empty_array(&t.to_arrow())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_with_rounding_and_precision_checks() {
        assert_eq!(parse_decimal("1.25", 4, 2), Ok(125));
        assert_eq!(parse_decimal("-1.255", 4, 2), Ok(-126));
        assert_eq!(parse_decimal("12", 4, 2), Ok(1200));
        assert_eq!(parse_decimal("1.5e1", 4, 1), Ok(150));
        assert!(parse_decimal("123.4", 4, 2).is_err());
        assert!(parse_decimal("abc", 4, 2).is_err());
    }

    #[test]
    fn strings_coerce_into_numbers_and_back() {
        let b = ColumnBuilder::new(&SqlType::Int, 1);
        assert!(matches!(b.check(Cell::Str("42".into())), Ok(Cell::Int(42))));
        assert!(b.check(Cell::Str("x".into())).is_err());
        assert!(b.check(Cell::Int(1 << 40)).is_err());
        let s = ColumnBuilder::new(&SqlType::String, 1);
        assert!(matches!(s.check(Cell::Int(7)), Ok(Cell::Str(v)) if v == "7"));
    }
}
