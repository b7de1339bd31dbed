//! The protobuf wire format: messages read into cells or JSON (proto3 defaults for absent scalars),
//! and written from a row of Arrow arrays or from JSON.

use std::borrow::Cow;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use serde_json::{Map, Value};

use super::schema::{FieldType, ProtoField, ProtoSchema, Scalar};
use crate::format::avro::read::decimal_text;
use crate::format::column::{Cell, parse_decimal};
use crate::format::cursor::{Cursor, unzigzag};
use crate::format::limits::Budget;
use crate::format::values::{
    binary_value, decimal_bytes, decimal_value, float_value, int_value, text_value,
};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over protobuf wire data.
#[derive(Debug)]
pub struct Wire<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Wire<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Wire {
            cursor: Cursor::new(buf, "Protobuf"),
        }
    }

    pub fn is_done(&self) -> bool {
        self.cursor.is_done()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.cursor.remaining()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        self.cursor.take(n)
    }

    pub fn varint(&mut self) -> Result<u64, String> {
        self.cursor.varint()
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()? as usize;
        self.take(n)
    }

    fn tag(&mut self) -> Result<(u32, u8), String> {
        let t = self.varint()?;
        Ok(((t >> 3) as u32, (t & 7) as u8))
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), String> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LENGTH => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            w => Err(format!("Unsupported protobuf wire type {w}")),
        }
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a number of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The integer fields (by number) of a small nested message such as a Timestamp.
fn small_message(bytes: &[u8]) -> Result<[i64; 4], String> {
    let mut out = [0i64; 4];
    let mut w = Wire::new(bytes);
    while !w.is_done() {
        let (n, wt) = w.tag()?;
        match (n, wt) {
            (1..=4, VARINT) => out[n as usize - 1] = w.varint()? as i64,
            _ => w.skip(wt)?,
        }
    }
    Ok(out)
}

/// The default a field has when the message leaves it out.
fn default_cell<'a>(schema: &ProtoSchema, f: &ProtoField) -> Cell<'a> {
    if f.repeated {
        return Cell::Json(Box::new(Value::Array(Vec::new())));
    }
    match &f.ty {
        FieldType::Scalar(s) => match s {
            Scalar::Double | Scalar::Float => Cell::Float(0.0),
            Scalar::Bool => Cell::Bool(false),
            Scalar::String => Cell::Str(Cow::Borrowed("")),
            Scalar::Bytes => Cell::Bytes(Cow::Borrowed(&[])),
            _ => Cell::Int(0),
        },
        FieldType::Enum(e) => schema.enums[*e]
            .values
            .iter()
            .find(|(_, n)| *n == 0)
            .map_or(Cell::Null, |(name, _)| Cell::Str(Cow::Owned(name.clone()))),
        FieldType::Map(_, _) => Cell::Json(Box::new(Value::Object(Map::new()))),
        _ => Cell::Null,
    }
}

/// Reads one value of a (non-repeated view of a) field's type.
fn read_value<'a>(
    schema: &ProtoSchema,
    ty: &FieldType,
    wt: u8,
    w: &mut Wire<'a>,
    budget: &mut Budget,
) -> Result<Cell<'a>, String> {
    if needs_length(ty) != (wt == LENGTH) {
        return Err(format!(
            "Protobuf wire type {wt} does not fit a field of type {ty:?}"
        ));
    }
    let fixed32 = |w: &mut Wire<'a>| -> Result<[u8; 4], String> {
        Ok(w.take(4)?.try_into().unwrap_or_default())
    };
    let fixed64 = |w: &mut Wire<'a>| -> Result<[u8; 8], String> {
        Ok(w.take(8)?.try_into().unwrap_or_default())
    };
    Ok(match ty {
        FieldType::Scalar(s) => match s {
            Scalar::Double => Cell::Float(f64::from_le_bytes(fixed64(w)?)),
            Scalar::Float => Cell::Float(f32::from_le_bytes(fixed32(w)?).into()),
            Scalar::Int32 => Cell::Int(w.varint()? as i64 as i32 as i64),
            Scalar::Int64 | Scalar::Uint64 => Cell::Int(w.varint()? as i64),
            Scalar::Uint32 => Cell::Int(w.varint()? as u32 as i64),
            Scalar::Sint32 | Scalar::Sint64 => Cell::Int(unzigzag(w.varint()?)),
            Scalar::Fixed32 => Cell::Int(u32::from_le_bytes(fixed32(w)?).into()),
            Scalar::Sfixed32 => Cell::Int(i32::from_le_bytes(fixed32(w)?).into()),
            Scalar::Fixed64 => Cell::Int(u64::from_le_bytes(fixed64(w)?) as i64),
            Scalar::Sfixed64 => Cell::Int(i64::from_le_bytes(fixed64(w)?)),
            Scalar::Bool => Cell::Bool(w.varint()? != 0),
            Scalar::String => Cell::Str(Cow::Borrowed(
                std::str::from_utf8(w.bytes()?).map_err(|_| "Protobuf string is not UTF-8")?,
            )),
            Scalar::Bytes => Cell::Bytes(Cow::Borrowed(w.bytes()?)),
        },
        FieldType::Enum(e) => {
            let n = w.varint()? as i64 as i32;
            let name = schema.enums[*e].values.iter().find(|(_, v)| *v == n);
            Cell::Str(Cow::Owned(
                name.map_or_else(|| n.to_string(), |(s, _)| s.clone()),
            ))
        }
        FieldType::Message(m) => {
            budget.enter()?;
            let value = message_json(schema, *m, w.bytes()?, budget)?;
            budget.leave();
            Cell::Json(Box::new(value))
        }
        FieldType::Timestamp => {
            let [seconds, nanos, ..] = small_message(w.bytes()?)?;
            Cell::Int(
                seconds
                    .checked_mul(1000)
                    .and_then(|ms| ms.checked_add(nanos / 1_000_000))
                    .ok_or_else(|| {
                        format!("Protobuf Timestamp of {seconds} seconds is out of range")
                    })?,
            )
        }
        FieldType::Date => {
            let [y, m, d, _] = small_message(w.bytes()?)?;
            if !(-5_000_000..=5_000_000).contains(&y)
                || !(1..=12).contains(&m)
                || !(1..=31).contains(&d)
            {
                return Err(format!("Protobuf Date {y}-{m}-{d} is not a date"));
            }
            Cell::Int(days_from_civil(y, m, d))
        }
        FieldType::Time => {
            let [h, m, s, nanos] = small_message(w.bytes()?)?;
            if !(0..24).contains(&h)
                || !(0..60).contains(&m)
                || !(0..60).contains(&s)
                || !(0..1_000_000_000).contains(&nanos)
            {
                return Err(format!(
                    "Protobuf TimeOfDay {h}:{m}:{s}.{nanos} is not a time"
                ));
            }
            Cell::Int(((h * 60 + m) * 60 + s) * 1000 + nanos / 1_000_000)
        }
        FieldType::Decimal { .. } => {
            let mut inner = Wire::new(w.bytes()?);
            let (mut raw, mut scale): (&[u8], i8) = (&[], 0);
            while !inner.is_done() {
                match inner.tag()? {
                    (1, LENGTH) => raw = inner.bytes()?,
                    (3, VARINT) => scale = inner.varint()? as i64 as i8,
                    (_, wt) => inner.skip(wt)?,
                }
            }
            let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
            let mut v: i128 = if negative { -1 } else { 0 };
            for b in raw.iter().take(16) {
                v = (v << 8) | i128::from(*b);
            }
            Cell::Number(Cow::Owned(decimal_text(v, scale)))
        }
        FieldType::Wrapper(s) => {
            let mut inner = Wire::new(w.bytes()?);
            let mut value = default_cell(
                schema,
                &ProtoField {
                    name: String::new(),
                    number: 1,
                    ty: FieldType::Scalar(*s),
                    repeated: false,
                },
            );
            while !inner.is_done() {
                match inner.tag()? {
                    (1, wt) => {
                        value = read_value(schema, &FieldType::Scalar(*s), wt, &mut inner, budget)?
                    }
                    (_, wt) => inner.skip(wt)?,
                }
            }
            value
        }
        FieldType::Map(_, _) => return Err("a map entry read as a value".to_string()),
    })
}

/// Whether values of the type are length-delimited on the wire.
fn needs_length(ty: &FieldType) -> bool {
    !matches!(
        ty,
        FieldType::Scalar(
            Scalar::Double
                | Scalar::Float
                | Scalar::Int32
                | Scalar::Int64
                | Scalar::Uint32
                | Scalar::Uint64
                | Scalar::Sint32
                | Scalar::Sint64
                | Scalar::Fixed32
                | Scalar::Fixed64
                | Scalar::Sfixed32
                | Scalar::Sfixed64
                | Scalar::Bool
        ) | FieldType::Enum(_)
    )
}

/// Adds one occurrence of a repeated or map field to the cell collecting it.
fn collect<'a>(
    schema: &ProtoSchema,
    f: &ProtoField,
    wt: u8,
    w: &mut Wire<'a>,
    cell: &mut Cell<'a>,
    budget: &mut Budget,
) -> Result<(), String> {
    let Cell::Json(collected) = cell else {
        *cell = default_cell(schema, f);
        return collect(schema, f, wt, w, cell, budget);
    };
    match (&f.ty, collected.as_mut()) {
        (FieldType::Map(kt, vt), Value::Object(m)) => {
            budget.take_items(1)?;
            let mut entry = Wire::new(w.bytes()?);
            let (mut key, mut value) = (Value::Null, Value::Null);
            while !entry.is_done() {
                match entry.tag()? {
                    (1, wt) => key = read_value(schema, kt, wt, &mut entry, budget)?.into_json(),
                    (2, wt) => value = read_value(schema, vt, wt, &mut entry, budget)?.into_json(),
                    (_, wt) => entry.skip(wt)?,
                }
            }
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            m.insert(key, value);
        }
        (ty, Value::Array(items)) => {
            if wt == LENGTH && !needs_length(ty) {
                // A packed run of numbers.
                let mut packed = Wire::new(w.bytes()?);
                let item_wt = match ty {
                    FieldType::Scalar(Scalar::Double | Scalar::Fixed64 | Scalar::Sfixed64) => {
                        FIXED64
                    }
                    FieldType::Scalar(Scalar::Float | Scalar::Fixed32 | Scalar::Sfixed32) => {
                        FIXED32
                    }
                    _ => VARINT,
                };
                while !packed.is_done() {
                    budget.take_items(1)?;
                    items.push(read_value(schema, ty, item_wt, &mut packed, budget)?.into_json());
                }
            } else {
                budget.take_items(1)?;
                items.push(read_value(schema, ty, wt, w, budget)?.into_json());
            }
        }
        _ => return Err(format!("field {} collects the wrong kind of value", f.name)),
    }
    Ok(())
}

/// Reads a message into one cell per target column: `targets[i]` is the column of field `i`; nested
/// messages and repeated fields draw on `budget`.
pub fn read_message_cells<'a>(
    schema: &ProtoSchema,
    message: usize,
    bytes: &'a [u8],
    targets: &[Option<usize>],
    out: &mut [Cell<'a>],
    budget: &mut Budget,
) -> Result<(), String> {
    let fields = &schema.messages[message].fields;
    for (f, t) in fields.iter().zip(targets) {
        if let Some(t) = t {
            out[*t] = default_cell(schema, f);
        }
    }
    let mut w = Wire::new(bytes);
    while !w.is_done() {
        let (number, wt) = w.tag()?;
        let Some(i) = fields.iter().position(|f| f.number == number) else {
            w.skip(wt)?;
            continue;
        };
        let f = &fields[i];
        match targets[i] {
            Some(t) if f.repeated || matches!(f.ty, FieldType::Map(_, _)) => {
                collect(schema, f, wt, &mut w, &mut out[t], budget)?
            }
            Some(t) => out[t] = read_value(schema, &f.ty, wt, &mut w, budget)?,
            None => w.skip(wt)?,
        }
    }
    Ok(())
}

/// Reads a message as a JSON object of all its fields.
pub fn read_message_json(
    schema: &ProtoSchema,
    message: usize,
    bytes: &[u8],
) -> Result<Value, String> {
    message_json(schema, message, bytes, &mut Budget::new("Protobuf"))
}

fn message_json(
    schema: &ProtoSchema,
    message: usize,
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<Value, String> {
    let fields = &schema.messages[message].fields;
    let targets: Vec<Option<usize>> = (0..fields.len()).map(Some).collect();
    let mut cells = vec![Cell::Null; fields.len()];
    read_message_cells(schema, message, bytes, &targets, &mut cells, budget)?;
    Ok(Value::Object(
        fields
            .iter()
            .zip(cells)
            .map(|(f, c)| (f.name.clone(), c.into_json()))
            .collect(),
    ))
}

/// Appends a varint.
pub fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn write_tag(number: u32, wt: u8, out: &mut Vec<u8>) {
    write_varint((u64::from(number) << 3) | u64::from(wt), out);
}

fn write_length(number: u32, body: &[u8], out: &mut Vec<u8>) {
    write_tag(number, LENGTH, out);
    write_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// A scalar value in the form the writers take it.
enum Plain<'v> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(&'v str),
    Bytes(Cow<'v, [u8]>),
    /// An unscaled decimal and its scale.
    Decimal(i128, i8),
}

fn write_plain(
    schema: &ProtoSchema,
    ty: &FieldType,
    number: u32,
    v: Plain<'_>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let wrong = |what: &str| format!("Cannot write {what} as protobuf {ty:?}");
    match (ty, v) {
        (FieldType::Scalar(s), v) => match (s, v) {
            (Scalar::Double, Plain::Float(f)) => {
                write_tag(number, FIXED64, out);
                out.extend_from_slice(&f.to_le_bytes());
            }
            (Scalar::Double, Plain::Int(i)) => {
                return write_plain(schema, ty, number, Plain::Float(i as f64), out);
            }
            (Scalar::Float, Plain::Float(f)) => {
                write_tag(number, FIXED32, out);
                out.extend_from_slice(&(f as f32).to_le_bytes());
            }
            (Scalar::Float, Plain::Int(i)) => {
                return write_plain(schema, ty, number, Plain::Float(i as f64), out);
            }
            (Scalar::Bool, Plain::Bool(b)) => {
                write_tag(number, VARINT, out);
                write_varint(b as u64, out);
            }
            (Scalar::Int32 | Scalar::Int64 | Scalar::Uint32 | Scalar::Uint64, Plain::Int(i)) => {
                write_tag(number, VARINT, out);
                write_varint(i as u64, out);
            }
            (Scalar::Sint32 | Scalar::Sint64, Plain::Int(i)) => {
                write_tag(number, VARINT, out);
                write_varint(((i << 1) ^ (i >> 63)) as u64, out);
            }
            (Scalar::Fixed32 | Scalar::Sfixed32, Plain::Int(i)) => {
                write_tag(number, FIXED32, out);
                out.extend_from_slice(&(i as i32).to_le_bytes());
            }
            (Scalar::Fixed64 | Scalar::Sfixed64, Plain::Int(i)) => {
                write_tag(number, FIXED64, out);
                out.extend_from_slice(&i.to_le_bytes());
            }
            (Scalar::String, Plain::Text(t)) => write_length(number, t.as_bytes(), out),
            (Scalar::Bytes, Plain::Bytes(b)) => write_length(number, &b, out),
            _ => return Err(wrong("a value of another type")),
        },
        (FieldType::Enum(e), Plain::Text(t)) => {
            let n = schema.enums[*e]
                .values
                .iter()
                .find(|(name, _)| name == t)
                .map(|(_, n)| *n)
                .ok_or_else(|| format!("'{t}' is not a value of enum {}", schema.enums[*e].name))?;
            write_tag(number, VARINT, out);
            write_varint(n as i64 as u64, out);
        }
        (FieldType::Timestamp, Plain::Int(ms)) => {
            let mut body = Vec::new();
            write_small(
                &[ms.div_euclid(1000), ms.rem_euclid(1000) * 1_000_000],
                &mut body,
            );
            write_length(number, &body, out);
        }
        (FieldType::Date, Plain::Int(days)) => {
            let (y, m, d) = civil_from_days(days);
            let mut body = Vec::new();
            write_small(&[y, m, d], &mut body);
            write_length(number, &body, out);
        }
        (FieldType::Time, Plain::Int(ms)) => {
            let mut body = Vec::new();
            let s = ms / 1000;
            write_small(
                &[s / 3600, s / 60 % 60, s % 60, ms % 1000 * 1_000_000],
                &mut body,
            );
            write_length(number, &body, out);
        }
        (FieldType::Decimal { precision, .. }, Plain::Decimal(v, scale)) => {
            let mut body = Vec::new();
            write_length(1, &decimal_bytes(v, None), &mut body);
            write_tag(2, VARINT, &mut body);
            write_varint(u64::from(*precision), &mut body);
            write_tag(3, VARINT, &mut body);
            write_varint(scale as i64 as u64, &mut body);
            write_length(number, &body, out);
        }
        (FieldType::Wrapper(s), v) => {
            let mut body = Vec::new();
            write_plain(schema, &FieldType::Scalar(*s), 1, v, &mut body)?;
            write_length(number, &body, out);
        }
        _ => return Err(wrong("a scalar")),
    }
    Ok(())
}

/// The fields 1..n of a small message (Timestamp, Date, TimeOfDay), zeros left out.
fn write_small(values: &[i64], out: &mut Vec<u8>) {
    for (i, v) in values.iter().enumerate() {
        if *v != 0 {
            write_tag(i as u32 + 1, VARINT, out);
            write_varint(*v as u64, out);
        }
    }
}

/// Writes a message whose fields' values are `arrays` (one per field) at `row`.
pub fn write_message_arrays(
    schema: &ProtoSchema,
    message: usize,
    arrays: &[&dyn Array],
    row: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    for (f, a) in schema.messages[message].fields.iter().zip(arrays) {
        write_field_array(schema, f, *a, row, out).map_err(|e| format!("field {}: {e}", f.name))?;
    }
    Ok(())
}

fn write_field_array(
    schema: &ProtoSchema,
    f: &ProtoField,
    a: &dyn Array,
    row: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if a.is_null(row) {
        return Ok(());
    }
    if f.repeated {
        let (values, range) = match a.data_type() {
            DataType::List(_) => {
                let l = a.as_list::<i32>();
                let o = l.value_offsets();
                (l.values().clone(), o[row] as usize..o[row + 1] as usize)
            }
            _ => {
                return Err(format!(
                    "a repeated field needs a list, not {}",
                    a.data_type()
                ));
            }
        };
        for i in range {
            if !values.is_null(i) {
                write_value_array(schema, &f.ty, f.number, values.as_ref(), i, out)?;
            }
        }
        return Ok(());
    }
    write_value_array(schema, &f.ty, f.number, a, row, out)
}

fn write_value_array(
    schema: &ProtoSchema,
    ty: &FieldType,
    number: u32,
    a: &dyn Array,
    row: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let missing = || format!("Cannot write a {} value as protobuf {ty:?}", a.data_type());
    let plain = match ty {
        FieldType::Message(m) => {
            let DataType::Struct(_) = a.data_type() else {
                return Err(missing());
            };
            let s = a.as_struct();
            let columns: Vec<&dyn Array> = s.columns().iter().map(|c| c.as_ref()).collect();
            let mut body = Vec::new();
            write_message_arrays(schema, *m, &columns, row, &mut body)?;
            write_length(number, &body, out);
            return Ok(());
        }
        FieldType::Map(kt, vt) => {
            let DataType::Map(_, _) = a.data_type() else {
                return Err(missing());
            };
            let m = a.as_map();
            let o = m.value_offsets();
            for i in o[row] as usize..o[row + 1] as usize {
                let mut entry = Vec::new();
                write_value_array(schema, kt, 1, m.keys().as_ref(), i, &mut entry)?;
                if !m.values().is_null(i) {
                    write_value_array(schema, vt, 2, m.values().as_ref(), i, &mut entry)?;
                }
                write_length(number, &entry, out);
            }
            return Ok(());
        }
        FieldType::Decimal { scale, .. } => {
            let DataType::Decimal128(_, s) = a.data_type() else {
                return Err(missing());
            };
            let s = if *scale == 0 { *s } else { *scale };
            Plain::Decimal(decimal_value(a, row, s).ok_or_else(missing)?, s)
        }
        FieldType::Scalar(Scalar::Bool) | FieldType::Wrapper(Scalar::Bool) => match a.data_type() {
            DataType::Boolean => Plain::Bool(a.as_boolean().value(row)),
            _ => return Err(missing()),
        },
        FieldType::Scalar(Scalar::String)
        | FieldType::Wrapper(Scalar::String)
        | FieldType::Enum(_) => Plain::Text(text_value(a, row).ok_or_else(missing)?),
        FieldType::Scalar(Scalar::Bytes) | FieldType::Wrapper(Scalar::Bytes) => {
            Plain::Bytes(Cow::Borrowed(binary_value(a, row).ok_or_else(missing)?))
        }
        FieldType::Scalar(Scalar::Double | Scalar::Float)
        | FieldType::Wrapper(Scalar::Double | Scalar::Float) => {
            Plain::Float(float_value(a, row).ok_or_else(missing)?)
        }
        _ => Plain::Int(int_value(a, row).ok_or_else(missing)?),
    };
    write_plain(schema, ty, number, plain, out)
}

/// Writes a JSON object (as test files give records) as a message, converting where ksqlDB's runner
/// does: numbers and strings into each other, fields matched case-insensitively.
pub fn write_message_json(
    schema: &ProtoSchema,
    message: usize,
    v: &Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let object = v.as_object().ok_or_else(|| {
        format!(
            "Cannot write {v} as protobuf message {}",
            schema.messages[message].name
        )
    })?;
    for f in &schema.messages[message].fields {
        let value = object.get(&f.name).or_else(|| {
            object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&f.name))
                .map(|(_, v)| v)
        });
        match (value, f.repeated) {
            (None | Some(Value::Null), _) => {}
            (Some(Value::Array(items)), true) => {
                for item in items.iter().filter(|i| !i.is_null()) {
                    write_value_json(schema, &f.ty, f.number, item, out)?;
                }
            }
            (Some(other), _) => write_value_json(schema, &f.ty, f.number, other, out)?,
        }
    }
    Ok(())
}

fn write_value_json(
    schema: &ProtoSchema,
    ty: &FieldType,
    number: u32,
    v: &Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let wrong = || format!("Cannot write {v} as protobuf {ty:?}");
    let plain = match ty {
        FieldType::Message(m) => {
            let mut body = Vec::new();
            write_message_json(schema, *m, v, &mut body)?;
            write_length(number, &body, out);
            return Ok(());
        }
        FieldType::Map(kt, vt) => {
            for (k, item) in v.as_object().ok_or_else(wrong)? {
                let mut entry = Vec::new();
                write_value_json(schema, kt, 1, &Value::String(k.clone()), &mut entry)?;
                if !item.is_null() {
                    write_value_json(schema, vt, 2, item, &mut entry)?;
                }
                write_length(number, &entry, out);
            }
            return Ok(());
        }
        FieldType::Decimal { precision, scale } => {
            let text = match v {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let scale = if *scale == 0 {
                text.split_once('.').map_or(0, |(_, f)| f.len() as i8)
            } else {
                *scale
            };
            Plain::Decimal(parse_decimal(&text, (*precision).max(1), scale)?, scale)
        }
        FieldType::Scalar(Scalar::Bool) | FieldType::Wrapper(Scalar::Bool) => match v {
            Value::Bool(b) => Plain::Bool(*b),
            Value::String(s) => Plain::Bool(s.eq_ignore_ascii_case("true")),
            _ => return Err(wrong()),
        },
        FieldType::Scalar(Scalar::String)
        | FieldType::Wrapper(Scalar::String)
        | FieldType::Enum(_) => match v {
            Value::String(s) => Plain::Text(s),
            other => {
                let text = other.to_string();
                return write_plain(schema, ty, number, Plain::Text(&text), out);
            }
        },
        FieldType::Scalar(Scalar::Bytes) | FieldType::Wrapper(Scalar::Bytes) => {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().ok_or_else(wrong)?)
                .map_err(|_| wrong())?;
            Plain::Bytes(Cow::Owned(b))
        }
        FieldType::Scalar(Scalar::Double | Scalar::Float)
        | FieldType::Wrapper(Scalar::Double | Scalar::Float) => Plain::Float(match v {
            Value::Number(n) => n.as_f64().ok_or_else(wrong)?,
            Value::String(s) => s.trim().parse().map_err(|_| wrong())?,
            _ => return Err(wrong()),
        }),
        _ => Plain::Int(match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(wrong)?,
            Value::String(s) => s.trim().parse().map_err(|_| wrong())?,
            _ => return Err(wrong()),
        }),
    };
    write_plain(schema, ty, number, plain, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_sql::SqlType;

    #[test]
    fn civil_dates_round_trip() {
        for days in [-719_468, -1, 0, 1, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn json_round_trips_through_a_derived_schema() {
        let schema = ProtoSchema::for_columns(&[
            ("ID".into(), SqlType::Bigint),
            ("NAME".into(), SqlType::String),
            ("NUMS".into(), SqlType::Array(Box::new(SqlType::Int))),
            (
                "M".into(),
                SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::Double)),
            ),
            (
                "S".into(),
                SqlType::Struct(vec![("A".into(), SqlType::Int)]),
            ),
            ("AT".into(), SqlType::Timestamp),
            ("D".into(), SqlType::Date),
            (
                "AMOUNT".into(),
                SqlType::Decimal {
                    precision: 6,
                    scale: 2,
                },
            ),
            ("FLAG".into(), SqlType::Boolean),
        ]);
        let root = schema.top[0];
        let mut out = Vec::new();
        write_message_json(
            &schema,
            root,
            &serde_json::json!({"id": -5, "name": "x", "nums": [1, -2], "m": {"k": 1.5},
                "s": {"a": 7}, "at": 1500, "d": 19000, "amount": 12.5}),
            &mut out,
        )
        .unwrap();
        let back = read_message_json(&schema, root, &out).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"ID": -5, "NAME": "x", "NUMS": [1, -2], "M": {"k": 1.5},
                "S": {"A": 7}, "AT": 1500, "D": 19000, "AMOUNT": 12.5, "FLAG": false}),
            "absent scalars read as proto3 defaults"
        );
    }

    #[test]
    fn packed_repeated_numbers_are_read() {
        let schema =
            ProtoSchema::parse("syntax = \"proto3\"; message M { repeated int32 N = 1; }").unwrap();
        // Field 1, length-delimited, 3 bytes: 1, 2, 150 (two bytes).
        let bytes = [0x0a, 0x04, 0x01, 0x02, 0x96, 0x01];
        assert_eq!(
            read_message_json(&schema, 0, &bytes).unwrap(),
            serde_json::json!({"N": [1, 2, 150]})
        );
    }
}
