//! Reading Avro binary data: one datum into a [`Cell`] (nested values become JSON) or into JSON.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::schema::AvroSchema;
use crate::format::column::Cell;
use crate::format::cursor::{Cursor, unzigzag};
use crate::format::limits::Budget;

/// A cursor over Avro binary data.
#[derive(Debug)]
pub struct Reader<'a> {
    cursor: Cursor<'a>,
    budget: Budget,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            cursor: Cursor::new(buf, "Avro"),
            budget: Budget::new("Avro"),
        }
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.cursor.is_done()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        self.cursor.take(n)
    }

    /// A zig-zag varint (`int` and `long`).
    pub fn long(&mut self) -> Result<i64, String> {
        self.cursor.varint().map(unzigzag)
    }

    fn int(&mut self) -> Result<i32, String> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| format!("Avro int {v} is out of range"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| format!("Negative Avro length {len}"))?;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "Avro string is not UTF-8".to_string())
    }

    fn double(&mut self) -> Result<f64, String> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }

    fn float(&mut self) -> Result<f64, String> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()) as f64)
    }

    /// Reads the blocks of an array or map, calling `item` once per item. Every block's count is
    /// taken from the record's allowance before its items are read (items of zero-width types take no
    /// bytes, so the bytes left cannot bound them).
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        self.budget.enter()?;
        loop {
            let count = self.long()?;
            if count == 0 {
                self.budget.leave();
                return Ok(());
            }
            if count < 0 {
                self.long()?; // the block's size in bytes
            }
            let count = count.unsigned_abs();
            self.budget.take_items(count)?;
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn branch<'s>(&mut self, branches: &'s [AvroSchema]) -> Result<&'s AvroSchema, String> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| branches.get(i))
            .ok_or_else(|| format!("Avro union branch {i} does not exist"))
    }

    fn decimal(&mut self, fixed: Option<usize>, scale: i8) -> Result<String, String> {
        let raw = match fixed {
            Some(n) => self.take(n)?,
            None => self.bytes()?,
        };
        if raw.len() > 16 {
            return Err("Avro decimal is wider than 16 bytes".to_string());
        }
        let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
        let mut v: i128 = if negative { -1 } else { 0 };
        for b in raw {
            v = (v << 8) | i128::from(*b);
        }
        Ok(decimal_text(v, scale))
    }
}

/// The text of an unscaled decimal at `scale`.
pub fn decimal_text(unscaled: i128, scale: i8) -> String {
    if scale <= 0 {
        return format!(
            "{}{}",
            unscaled,
            "0".repeat(usize::from(scale.unsigned_abs()))
        );
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

/// Reads one datum as a cell: scalars as themselves (strings borrowed), nested values as JSON.
pub fn read_cell<'a>(r: &mut Reader<'a>, s: &AvroSchema) -> Result<Cell<'a>, String> {
    Ok(match s {
        AvroSchema::Null => Cell::Null,
        AvroSchema::Boolean => Cell::Bool(r.take(1)?[0] != 0),
        AvroSchema::Int | AvroSchema::Long | AvroSchema::Date | AvroSchema::TimeMillis => {
            Cell::Int(r.long()?)
        }
        AvroSchema::TimestampMillis => Cell::Int(r.long()?),
        AvroSchema::TimeMicros | AvroSchema::TimestampMicros => {
            Cell::Int(r.long()?.div_euclid(1000))
        }
        AvroSchema::Float => Cell::Float(r.float()?),
        AvroSchema::Double => Cell::Float(r.double()?),
        AvroSchema::Bytes => Cell::Bytes(Cow::Borrowed(r.bytes()?)),
        AvroSchema::Fixed { size, .. } => Cell::Bytes(Cow::Borrowed(r.take(*size)?)),
        AvroSchema::String => Cell::Str(Cow::Borrowed(r.str()?)),
        AvroSchema::Enum { symbols, .. } => {
            let i = r.int()?;
            let symbol = symbols
                .get(i as usize)
                .ok_or_else(|| format!("Avro enum symbol {i} does not exist"))?;
            Cell::Str(Cow::Owned(symbol.clone()))
        }
        AvroSchema::Decimal { fixed, scale, .. } => {
            Cell::Number(Cow::Owned(r.decimal(*fixed, *scale)?))
        }
        AvroSchema::Union(branches) => {
            let b = r.branch(branches)?;
            read_cell(r, b)?
        }
        AvroSchema::Record { .. } | AvroSchema::Array(_) | AvroSchema::Map(_) => {
            Cell::Json(Box::new(read_json(r, s)?))
        }
    })
}

/// Reads one datum as JSON, the way ksqlDB shows values: bytes as base64, times as numbers.
pub fn read_json(r: &mut Reader<'_>, s: &AvroSchema) -> Result<Value, String> {
    Ok(match s {
        AvroSchema::Record { fields, .. } => {
            let mut m = Map::new();
            for f in fields {
                m.insert(f.name.clone(), read_json(r, &f.schema)?);
            }
            Value::Object(m)
        }
        AvroSchema::Array(items) => {
            let mut out = Vec::new();
            r.blocks(|r| {
                out.push(read_json(r, items)?);
                Ok(())
            })?;
            Value::Array(out)
        }
        AvroSchema::Map(values) => {
            let mut m = Map::new();
            r.blocks(|r| {
                let k = r.str()?.to_string();
                m.insert(k, read_json(r, values)?);
                Ok(())
            })?;
            Value::Object(m)
        }
        AvroSchema::Union(branches) => {
            let b = r.branch(branches)?;
            read_json(r, b)?
        }
        scalar => read_cell(r, scalar)?.into_json(),
    })
}

/// Skips one datum.
pub fn skip(r: &mut Reader<'_>, s: &AvroSchema) -> Result<(), String> {
    match s {
        AvroSchema::Null => {}
        AvroSchema::Boolean => {
            r.take(1)?;
        }
        AvroSchema::Int
        | AvroSchema::Long
        | AvroSchema::Enum { .. }
        | AvroSchema::Date
        | AvroSchema::TimeMillis
        | AvroSchema::TimeMicros
        | AvroSchema::TimestampMillis
        | AvroSchema::TimestampMicros => {
            r.long()?;
        }
        AvroSchema::Float => {
            r.take(4)?;
        }
        AvroSchema::Double => {
            r.take(8)?;
        }
        AvroSchema::Bytes | AvroSchema::String | AvroSchema::Decimal { fixed: None, .. } => {
            r.bytes()?;
        }
        AvroSchema::Fixed { size, .. }
        | AvroSchema::Decimal {
            fixed: Some(size), ..
        } => {
            r.take(*size)?;
        }
        AvroSchema::Record { fields, .. } => {
            for f in fields {
                skip(r, &f.schema)?;
            }
        }
        AvroSchema::Array(items) => r.blocks(|r| skip(r, items))?,
        AvroSchema::Map(values) => r.blocks(|r| {
            r.bytes()?;
            skip(r, values)
        })?,
        AvroSchema::Union(branches) => {
            let b = r.branch(branches)?;
            skip(r, b)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_block_counts_are_refused_before_looping() {
        let nulls = AvroSchema::Array(Box::new(AvroSchema::Null));
        // 2^62 zero-width items; i64::MIN as a count (negative counts carry a byte size).
        for bytes in [
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01][..],
            &[
                0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00,
            ],
        ] {
            assert!(read_json(&mut Reader::new(bytes), &nulls).is_err());
            assert!(skip(&mut Reader::new(bytes), &nulls).is_err());
        }
        // Small blocks again and again add up to the same allowance.
        let mut many = Vec::new();
        for _ in 0..20 {
            many.extend_from_slice(&[0x80, 0x80, 0x40]); // 2^19 items
        }
        many.push(0);
        assert!(read_json(&mut Reader::new(&many), &nulls).is_err());
        // Within the allowance it reads.
        assert_eq!(
            read_json(&mut Reader::new(&[0x06, 0x00]), &nulls).unwrap(),
            serde_json::json!([null, null, null])
        );
    }

    #[test]
    fn decimals_print_at_their_scale() {
        assert_eq!(decimal_text(1011, 2), "10.11");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(7, 0), "7");
        assert_eq!(decimal_text(7, -2), "700");
        assert_eq!(decimal_text(-1, i8::MIN).len(), 130);
    }
}
