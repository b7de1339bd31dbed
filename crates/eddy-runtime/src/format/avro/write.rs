//! Writing Avro binary data: a row of Arrow arrays, or a JSON value (what test files give), in a schema.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use serde_json::Value;

use super::schema::AvroSchema;
use crate::format::column::parse_decimal;
use crate::format::values::{
    binary_value, decimal_bytes, decimal_value, float_value, int_value, text_value,
};

/// Appends a zig-zag varint.
pub fn write_long(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

fn write_decimal(v: i128, fixed: Option<usize>, out: &mut Vec<u8>) {
    let b = decimal_bytes(v, fixed);
    match fixed {
        Some(_) => out.extend_from_slice(&b),
        None => write_bytes(&b, out),
    }
}

/// Which branch of `branches` a value takes: the null one for null, otherwise the first that `fits`.
fn branch_of(
    branches: &[AvroSchema],
    is_null: bool,
    fits: impl Fn(&AvroSchema) -> bool,
) -> Result<usize, String> {
    branches
        .iter()
        .position(|b| (*b == AvroSchema::Null) == is_null && (is_null || fits(b)))
        .ok_or_else(|| {
            if is_null {
                "A null value for an Avro union without null".to_string()
            } else {
                "No branch of the Avro union fits the value".to_string()
            }
        })
}

fn cannot(a: &dyn Array, s: &AvroSchema) -> String {
    format!(
        "Cannot write a value of type {} as Avro {}",
        a.data_type(),
        s.to_json()
    )
}

/// Appends row `row` of `a` in schema `s`.
pub fn write_array(
    a: &dyn Array,
    row: usize,
    s: &AvroSchema,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if let AvroSchema::Union(branches) = s {
        let i = branch_of(branches, a.is_null(row), |_| true)?;
        write_long(i as i64, out);
        return match &branches[i] {
            AvroSchema::Null => Ok(()),
            b => write_array(a, row, b, out),
        };
    }
    if a.is_null(row) {
        return Err(format!(
            "A null value for Avro {}, which is not optional",
            s.to_json()
        ));
    }
    match s {
        AvroSchema::Null => {}
        AvroSchema::Boolean => match a.data_type() {
            DataType::Boolean => out.push(a.as_boolean().value(row) as u8),
            _ => return Err(cannot(a, s)),
        },
        AvroSchema::Int
        | AvroSchema::Long
        | AvroSchema::Date
        | AvroSchema::TimeMillis
        | AvroSchema::TimestampMillis => {
            write_long(int_value(a, row).ok_or_else(|| cannot(a, s))?, out)
        }
        AvroSchema::TimeMicros | AvroSchema::TimestampMicros => {
            write_long(int_value(a, row).ok_or_else(|| cannot(a, s))? * 1000, out)
        }
        AvroSchema::Float | AvroSchema::Double => {
            let v = float_value(a, row).ok_or_else(|| cannot(a, s))?;
            if *s == AvroSchema::Float {
                out.extend_from_slice(&(v as f32).to_le_bytes());
            } else {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        AvroSchema::String => write_bytes(
            text_value(a, row).ok_or_else(|| cannot(a, s))?.as_bytes(),
            out,
        ),
        AvroSchema::Enum { symbols, .. } => {
            let text = text_value(a, row).ok_or_else(|| cannot(a, s))?;
            let i = symbols
                .iter()
                .position(|sym| sym == text)
                .ok_or_else(|| format!("'{text}' is not a symbol of the Avro enum"))?;
            write_long(i as i64, out);
        }
        AvroSchema::Bytes => write_bytes(binary_value(a, row).ok_or_else(|| cannot(a, s))?, out),
        AvroSchema::Fixed { size, .. } => {
            let b = binary_value(a, row).ok_or_else(|| cannot(a, s))?;
            if b.len() != *size {
                return Err(format!("{} bytes for an Avro fixed of {size}", b.len()));
            }
            out.extend_from_slice(b);
        }
        AvroSchema::Decimal { scale, fixed, .. } => {
            let v = decimal_value(a, row, *scale).ok_or_else(|| cannot(a, s))?;
            write_decimal(v, *fixed, out);
        }
        AvroSchema::Array(items) => {
            let (values, range) = match a.data_type() {
                DataType::List(_) => {
                    let l = a.as_list::<i32>();
                    let o = l.value_offsets();
                    (l.values(), o[row] as usize..o[row + 1] as usize)
                }
                DataType::LargeList(_) => {
                    let l = a.as_list::<i64>();
                    let o = l.value_offsets();
                    (l.values(), o[row] as usize..o[row + 1] as usize)
                }
                _ => return Err(cannot(a, s)),
            };
            if !range.is_empty() {
                write_long(range.len() as i64, out);
                for i in range {
                    write_array(values.as_ref(), i, items, out)?;
                }
            }
            write_long(0, out);
        }
        AvroSchema::Map(values) => {
            let DataType::Map(_, _) = a.data_type() else {
                return Err(cannot(a, s));
            };
            let m = a.as_map();
            let o = m.value_offsets();
            let range = o[row] as usize..o[row + 1] as usize;
            if !range.is_empty() {
                write_long(range.len() as i64, out);
                for i in range {
                    let key = text_value(m.keys().as_ref(), i)
                        .ok_or_else(|| "Avro map keys must be strings".to_string())?;
                    write_bytes(key.as_bytes(), out);
                    write_array(m.values().as_ref(), i, values, out)?;
                }
            }
            write_long(0, out);
        }
        AvroSchema::Record { fields, .. } => {
            let DataType::Struct(_) = a.data_type() else {
                return Err(cannot(a, s));
            };
            let st = a.as_struct();
            for (f, column) in fields.iter().zip(st.columns()) {
                write_array(column.as_ref(), row, &f.schema, out)?;
            }
        }
        AvroSchema::Union(_) => unreachable!("unions are handled above"),
    }
    Ok(())
}

/// Appends a JSON value (as test files give records) in schema `s`, converting where ksqlDB's test
/// runner does: numbers and strings into each other, record fields matched case-insensitively.
pub fn write_json(v: &Value, s: &AvroSchema, out: &mut Vec<u8>) -> Result<(), String> {
    if let AvroSchema::Union(branches) = s {
        let i = branch_of(branches, v.is_null(), |b| json_fits(v, b))?;
        write_long(i as i64, out);
        return write_json(v, &branches[i], out);
    }
    let wrong = || format!("Cannot write {v} as Avro {}", s.to_json());
    let number = |v: &Value| -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(t) => t.trim().parse().ok(),
            _ => None,
        }
    };
    let integer = |v: &Value| -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(t) => t.trim().parse().ok(),
            _ => None,
        }
    };
    match s {
        AvroSchema::Null if v.is_null() => {}
        AvroSchema::Boolean => match v {
            Value::Bool(b) => out.push(*b as u8),
            Value::String(t) => out.push(t.eq_ignore_ascii_case("true") as u8),
            _ => return Err(wrong()),
        },
        AvroSchema::Int
        | AvroSchema::Long
        | AvroSchema::Date
        | AvroSchema::TimeMillis
        | AvroSchema::TimeMicros
        | AvroSchema::TimestampMillis
        | AvroSchema::TimestampMicros => write_long(integer(v).ok_or_else(wrong)?, out),
        AvroSchema::Float => {
            out.extend_from_slice(&(number(v).ok_or_else(wrong)? as f32).to_le_bytes())
        }
        AvroSchema::Double => out.extend_from_slice(&number(v).ok_or_else(wrong)?.to_le_bytes()),
        AvroSchema::String => match v {
            Value::String(t) => write_bytes(t.as_bytes(), out),
            Value::Null => return Err(wrong()),
            other => write_bytes(other.to_string().as_bytes(), out),
        },
        AvroSchema::Enum { symbols, .. } => {
            let t = v.as_str().ok_or_else(wrong)?;
            let i = symbols.iter().position(|sym| sym == t).ok_or_else(wrong)?;
            write_long(i as i64, out);
        }
        AvroSchema::Bytes | AvroSchema::Fixed { .. } => {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().ok_or_else(wrong)?)
                .map_err(|_| wrong())?;
            match s {
                AvroSchema::Fixed { .. } => out.extend_from_slice(&b),
                _ => write_bytes(&b, out),
            }
        }
        AvroSchema::Decimal {
            precision,
            scale,
            fixed,
        } => {
            let text = match v {
                Value::String(t) => t.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(wrong()),
            };
            write_decimal(parse_decimal(&text, *precision, *scale)?, *fixed, out);
        }
        AvroSchema::Array(items) => {
            let list = v.as_array().ok_or_else(wrong)?;
            if !list.is_empty() {
                write_long(list.len() as i64, out);
                for item in list {
                    write_json(item, items, out)?;
                }
            }
            write_long(0, out);
        }
        AvroSchema::Map(values) => {
            let m = v.as_object().ok_or_else(wrong)?;
            if !m.is_empty() {
                write_long(m.len() as i64, out);
                for (k, item) in m {
                    write_bytes(k.as_bytes(), out);
                    write_json(item, values, out)?;
                }
            }
            write_long(0, out);
        }
        AvroSchema::Record { fields, .. } => {
            let m = v.as_object().ok_or_else(wrong)?;
            for f in fields {
                let item = m
                    .get(&f.name)
                    .or_else(|| {
                        m.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(&f.name))
                            .map(|(_, v)| v)
                    })
                    .unwrap_or(&Value::Null);
                write_json(item, &f.schema, out)?;
            }
        }
        AvroSchema::Null | AvroSchema::Union(_) => return Err(wrong()),
    }
    Ok(())
}

/// Whether a JSON value can be written in a (non-union) schema.
fn json_fits(v: &Value, s: &AvroSchema) -> bool {
    match (v, s) {
        (Value::Bool(_), AvroSchema::Boolean) => true,
        (Value::Number(n), AvroSchema::Int | AvroSchema::Long) => n.is_i64(),
        (Value::Number(_), _) => !matches!(
            s,
            AvroSchema::Record { .. }
                | AvroSchema::Array(_)
                | AvroSchema::Map(_)
                | AvroSchema::Boolean
        ),
        (Value::String(_), _) => !matches!(
            s,
            AvroSchema::Record { .. } | AvroSchema::Array(_) | AvroSchema::Map(_)
        ),
        (Value::Array(_), AvroSchema::Array(_)) => true,
        (Value::Object(_), AvroSchema::Record { .. } | AvroSchema::Map(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::read::{Reader, read_json};
    use super::*;

    #[test]
    fn json_round_trips_through_a_schema() {
        let s = AvroSchema::parse(
            r#"{"type":"record","name":"R","fields":[
                {"name":"ID","type":["null","long"]},
                {"name":"D","type":["null",{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}]},
                {"name":"L","type":["null",{"type":"array","items":["null","string"]}]},
                {"name":"M","type":["null",{"type":"map","values":["null","int"]}]}]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        write_json(
            &serde_json::json!({"id": 300, "d": -12.5, "l": ["a", 1, null], "m": {"k": 2}}),
            &s,
            &mut out,
        )
        .unwrap();
        let mut r = Reader::new(&out);
        let back = read_json(&mut r, &s).unwrap();
        assert!(r.is_done());
        assert_eq!(
            back,
            serde_json::json!({"ID": 300, "D": -12.5, "L": ["a", "1", null], "M": {"k": 2}})
        );
    }
}
