//! Column builders: decoded field values ([`Cell`]s) are checked against the column's SQL type and
//! appended to growable buffers that become Arrow arrays; a failed record is cut back out.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, StringArray, Time32MillisecondArray, TimestampMillisecondArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{Field, Schema};
use serde_json::Value;

use eddy_sql::SqlType;
use eddy_sql::java::{format_double, parse_millis};

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

impl Cell<'_> {
    /// The cell as JSON, the way ksqlDB shows values: bytes as base64, decimals as numbers.
    pub fn into_json(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(b),
            Cell::Int(i) => Value::from(i),
            Cell::Float(f) => Value::from(f),
            Cell::Number(n) => serde_json::from_str(&n).unwrap_or(Value::String(n.into_owned())),
            Cell::Str(s) => Value::String(s.into_owned()),
            Cell::Bytes(b) => {
                use base64::Engine;
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Cell::Decimal(d) => Value::String(d.to_string()),
            Cell::Json(v) => *v,
        }
    }
}

impl<'a> From<&'a Value> for Cell<'a> {
    /// A JSON value as the JSON format reads it.
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Cell::Int(i),
                (None, Some(f)) if !n.is_u64() => Cell::Float(f),
                _ => Cell::Number(Cow::Owned(n.to_string())),
            },
            Value::String(s) => Cell::Str(Cow::Borrowed(s)),
            other => Cell::Json(Box::new(other.clone())),
        }
    }
}

/// Builds one Arrow column. Cells are checked against the column's type and converted on the way in;
/// a builder can be cut back to an earlier length, so a record that fails half-way leaves nothing behind.
pub struct ColumnBuilder {
    sql_type: SqlType,
    /// One entry per row: false for NULL.
    valid: Vec<bool>,
    values: Values,
}

/// The values of a column, in the layout its Arrow array takes.
enum Values {
    Bool(Vec<bool>),
    /// INT, DATE (days), TIME (milliseconds).
    I32(Vec<i32>),
    /// BIGINT, TIMESTAMP (milliseconds).
    I64(Vec<i64>),
    F64(Vec<f64>),
    Decimal(Vec<i128>),
    /// STRING and BYTES: offsets (one more than rows) into the bytes.
    Var {
        offsets: Vec<i32>,
        data: Vec<u8>,
    },
    /// ARRAY, MAP, STRUCT: JSON values converted when the batch is finished.
    Nested(Vec<Value>),
}

impl ColumnBuilder {
    /// A builder for a column of `t`.
    pub fn new(t: &SqlType, capacity: usize) -> Self {
        let var = |bytes: usize| {
            let mut offsets = Vec::with_capacity(capacity + 1);
            offsets.push(0);
            Values::Var {
                offsets,
                data: Vec::with_capacity(bytes),
            }
        };
        let values = match t {
            SqlType::Boolean => Values::Bool(Vec::with_capacity(capacity)),
            SqlType::Int | SqlType::Date | SqlType::Time => {
                Values::I32(Vec::with_capacity(capacity))
            }
            SqlType::Bigint | SqlType::Timestamp => Values::I64(Vec::with_capacity(capacity)),
            SqlType::Double => Values::F64(Vec::with_capacity(capacity)),
            SqlType::Decimal { .. } => Values::Decimal(Vec::with_capacity(capacity)),
            SqlType::String | SqlType::Bytes => var(capacity * 16),
            _ => Values::Nested(Vec::with_capacity(capacity)),
        };
        ColumnBuilder {
            sql_type: t.clone(),
            valid: Vec::with_capacity(capacity),
            values,
        }
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    /// Whether no row was appended yet.
    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    /// Cuts the column back to its first `len` rows.
    pub fn truncate(&mut self, len: usize) {
        self.valid.truncate(len);
        match &mut self.values {
            Values::Bool(v) => v.truncate(len),
            Values::I32(v) => v.truncate(len),
            Values::I64(v) => v.truncate(len),
            Values::F64(v) => v.truncate(len),
            Values::Decimal(v) => v.truncate(len),
            Values::Var { offsets, data } => {
                offsets.truncate(len + 1);
                data.truncate(offsets[len] as usize);
            }
            Values::Nested(v) => v.truncate(len),
        }
    }

    /// Checks a cell, converts it to the column's type and appends it.
    pub fn push(&mut self, cell: Cell<'_>) -> Result<(), String> {
        // The common cases first: a value already of the column's type.
        let done = match (&mut self.values, &cell) {
            (Values::F64(v), Cell::Float(f)) => {
                v.push(*f);
                true
            }
            (Values::I64(v), Cell::Int(i)) => {
                v.push(*i);
                true
            }
            (Values::I32(v), Cell::Int(i)) if matches!(self.sql_type, SqlType::Int) => {
                match i32::try_from(*i) {
                    Ok(i) => {
                        v.push(i);
                        true
                    }
                    Err(_) => false,
                }
            }
            (Values::Var { offsets, data }, Cell::Str(s))
                if matches!(self.sql_type, SqlType::String) =>
            {
                data.extend_from_slice(s.as_bytes());
                offsets.push(data.len() as i32);
                true
            }
            _ => false,
        };
        if done {
            self.valid.push(true);
            return Ok(());
        }
        let cell = self.check(cell)?;
        self.append(cell);
        Ok(())
    }

    /// Checks a cell against the column type and converts it to the form `append` takes.
    pub fn check<'a>(&self, cell: Cell<'a>) -> Result<Cell<'a>, String> {
        if matches!(cell, Cell::Null) {
            return Ok(Cell::Null);
        }
        match &self.sql_type {
            SqlType::Boolean => match cell {
                Cell::Bool(_) => Ok(cell),
                Cell::Str(s) if s.eq_ignore_ascii_case("true") => Ok(Cell::Bool(true)),
                Cell::Str(s) if s.eq_ignore_ascii_case("false") => Ok(Cell::Bool(false)),
                other => Err(mismatch(&other, "BOOLEAN")),
            },
            SqlType::Int | SqlType::Date | SqlType::Time => {
                let v = to_i64(cell, "INTEGER")?;
                i32::try_from(v)
                    .map(|_| Cell::Int(v))
                    .map_err(|_| format!("Value {v} is out of range for INTEGER"))
            }
            SqlType::Bigint | SqlType::Timestamp => Ok(Cell::Int(to_i64(cell, "BIGINT")?)),
            SqlType::Double => match cell {
                Cell::Float(_) => Ok(cell),
                Cell::Int(i) => Ok(Cell::Float(i as f64)),
                Cell::Number(s) | Cell::Str(s) => s
                    .trim()
                    .parse::<f64>()
                    .map(Cell::Float)
                    .map_err(|_| format!("Can't convert '{s}' to DOUBLE")),
                other => Err(mismatch(&other, "DOUBLE")),
            },
            SqlType::Decimal { precision, scale } => {
                let text: Cow<'_, str> = match cell {
                    Cell::Int(i) => i.to_string().into(),
                    Cell::Float(f) => f.to_string().into(),
                    Cell::Number(s) | Cell::Str(s) => s,
                    Cell::Decimal(_) => return Ok(cell),
                    other => return Err(mismatch(&other, "DECIMAL")),
                };
                parse_decimal(&text, *precision, *scale).map(Cell::Decimal)
            }
            SqlType::String => Ok(match cell {
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
            SqlType::Bytes => match cell {
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
            t => {
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
    fn append(&mut self, cell: Cell<'_>) {
        self.valid.push(!matches!(cell, Cell::Null));
        match (&mut self.values, cell) {
            (Values::Bool(v), Cell::Bool(b)) => v.push(b),
            (Values::I32(v), Cell::Int(i)) => v.push(i as i32),
            (Values::I64(v), Cell::Int(i)) => v.push(i),
            (Values::F64(v), Cell::Float(f)) => v.push(f),
            (Values::Decimal(v), Cell::Decimal(d)) => v.push(d),
            (Values::Var { offsets, data }, Cell::Str(s)) => {
                data.extend_from_slice(s.as_bytes());
                offsets.push(data.len() as i32);
            }
            (Values::Var { offsets, data }, Cell::Bytes(b)) => {
                data.extend_from_slice(&b);
                offsets.push(data.len() as i32);
            }
            (Values::Nested(v), Cell::Json(j)) => v.push(*j),
            (values, Cell::Null) => match values {
                Values::Bool(v) => v.push(false),
                Values::I32(v) => v.push(0),
                Values::I64(v) => v.push(0),
                Values::F64(v) => v.push(0.0),
                Values::Decimal(v) => v.push(0),
                Values::Var { offsets, data } => offsets.push(data.len() as i32),
                Values::Nested(v) => v.push(Value::Null),
            },
            (_, cell) => unreachable!("append of an unchecked cell {cell:?}"),
        }
    }

    /// The event time in the last row, for a `TIMESTAMP` column (strings read with `format`).
    pub fn last_millis(&self, format: Option<&str>) -> Result<i64, String> {
        let last = self.len().checked_sub(1).filter(|i| self.valid[*i]);
        let missing = || "The TIMESTAMP column is null: the record has no event time".to_string();
        let i = last.ok_or_else(missing)?;
        match (&self.values, format) {
            (Values::I64(v), _) => Ok(v[i]),
            (Values::Var { offsets, data }, Some(format)) => {
                let text =
                    String::from_utf8_lossy(&data[offsets[i] as usize..offsets[i + 1] as usize]);
                parse_millis(&text, format).ok_or_else(|| {
                    format!("Failed to parse timestamp '{text}' with the TIMESTAMP_FORMAT")
                })
            }
            _ => Err(missing()),
        }
    }

    /// Finishes the column and empties the builder.
    pub fn finish(&mut self) -> Result<ArrayRef, String> {
        let valid = std::mem::take(&mut self.valid);
        let nulls = if valid.iter().all(|v| *v) {
            None
        } else {
            Some(NullBuffer::from(valid))
        };
        let err = |e: datafusion::arrow::error::ArrowError| e.to_string();
        Ok(match (&mut self.values, &self.sql_type) {
            (Values::Bool(v), _) => Arc::new(BooleanArray::new(
                BooleanBuffer::from(std::mem::take(v)),
                nulls,
            )),
            (Values::I32(v), SqlType::Date) => {
                Arc::new(Date32Array::new(std::mem::take(v).into(), nulls))
            }
            (Values::I32(v), SqlType::Time) => {
                Arc::new(Time32MillisecondArray::new(std::mem::take(v).into(), nulls))
            }
            (Values::I32(v), _) => Arc::new(Int32Array::new(std::mem::take(v).into(), nulls)),
            (Values::I64(v), SqlType::Timestamp) => Arc::new(TimestampMillisecondArray::new(
                std::mem::take(v).into(),
                nulls,
            )),
            (Values::I64(v), _) => Arc::new(Int64Array::new(std::mem::take(v).into(), nulls)),
            (Values::F64(v), _) => Arc::new(Float64Array::new(std::mem::take(v).into(), nulls)),
            (Values::Decimal(v), SqlType::Decimal { precision, scale }) => Arc::new(
                Decimal128Array::new(std::mem::take(v).into(), nulls)
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(err)?,
            ),
            (Values::Var { offsets, data }, t) => {
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let data = Buffer::from_vec(std::mem::take(data));
                if *t == SqlType::Bytes {
                    Arc::new(BinaryArray::try_new(offsets, data, nulls).map_err(err)?)
                } else {
                    Arc::new(StringArray::try_new(offsets, data, nulls).map_err(err)?)
                }
            }
            (Values::Nested(v), t) => nested_array(t, std::mem::take(v))?,
            (Values::Decimal(_), t) => return Err(format!("decimal values for a {t} column")),
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
        // BYTES are base64 in ksqlDB's JSON; Arrow's JSON reader takes hex.
        (SqlType::Bytes, Value::String(s)) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&s)
                .map_err(|e| format!("Can't convert '{s}' to BYTES: {e}"))?;
            Ok(Value::String(
                bytes.iter().map(|b| format!("{b:02x}")).collect(),
            ))
        }
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
