//! Decoding Kafka keys and values (JSON, JSON_SR, AVRO, DELIMITED, KAFKA, NONE) into the cells of a row.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use eddy_sql::SqlType;
use eddy_sql::catalog::{Format, FormatKind};

use super::avro::AvroDecoder;
use super::column::{Cell, ColumnBuilder};
use super::framing::unframe;
use super::json_fast::{KeyCache, flat_object};
use super::protobuf::ProtobufDecoder;
use crate::registry::SchemaRegistry;

/// Decodes the key or the value part of records for a fixed list of columns.
#[derive(Debug, Clone)]
pub struct PartDecoder {
    format: Format,
    names: Vec<String>,
    types: Vec<SqlType>,
    /// Columns no query expression reads: JSON skips their values (they decode as NULL).
    unused: Vec<bool>,
    /// How AVRO payloads are read (set by [`PartDecoder::with_registry`]).
    avro: Option<AvroDecoder>,
    /// How PROTOBUF (set by [`PartDecoder::with_registry`]) and PROTOBUF_NOSR payloads are read.
    protobuf: Option<ProtobufDecoder>,
}

impl PartDecoder {
    /// A decoder for `columns` (name, type) in `format`.
    pub fn new(format: Format, columns: Vec<(String, SqlType)>) -> Self {
        let protobuf =
            (format.kind == FormatKind::ProtobufNoSr).then(|| ProtobufDecoder::new(None, &columns));
        let (names, types): (Vec<String>, Vec<SqlType>) = columns.into_iter().unzip();
        PartDecoder {
            format,
            unused: vec![false; names.len()],
            names,
            types,
            avro: None,
            protobuf,
        }
    }

    /// Reads schema-registry formats with the writers' schemas from `registry`.
    pub fn with_registry(mut self, registry: &Arc<dyn SchemaRegistry>) -> Self {
        match self.format.kind {
            FormatKind::Avro => {
                self.avro = Some(AvroDecoder::new(
                    registry.clone(),
                    self.names.clone(),
                    self.wraps(),
                ))
            }
            FormatKind::Protobuf => {
                let columns: Vec<(String, SqlType)> = self
                    .names
                    .iter()
                    .cloned()
                    .zip(self.types.iter().cloned())
                    .collect();
                self.protobuf = Some(ProtobufDecoder::new(Some(registry.clone()), &columns));
            }
            _ => {}
        }
        self
    }

    /// Whether the columns are fields of an object, record or message (rather than the whole payload).
    fn wraps(&self) -> bool {
        self.width() > 1
            || self.format.wrap_single_value
            || matches!(
                self.format.kind,
                FormatKind::Protobuf | FormatKind::ProtobufNoSr
            )
    }

    /// Marks the columns that need not be decoded (`used[i]` is false for column `i`).
    pub fn skip_unused(&mut self, used: &[bool]) {
        self.unused = used.iter().map(|u| !u).collect();
    }

    /// Number of columns this decoder fills.
    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// Appends one value per column to `columns` (the columns of this part, all of the same length), or
    /// says why the bytes are bad; then the caller cuts the columns back. A flat JSON object goes through
    /// the fast path straight into the columns; anything else is decoded into `cells` first.
    pub fn decode_into<'a>(
        &self,
        bytes: Option<&'a [u8]>,
        columns: &mut [ColumnBuilder],
        cells: &mut Vec<Cell<'a>>,
        cache: &mut KeyCache,
    ) -> Result<(), String> {
        if columns.is_empty() {
            return Ok(());
        }
        let bytes = match (bytes, self.format.kind) {
            (Some(b), FormatKind::JsonSr) => Some(unframe(b)?.1),
            _ => bytes,
        };
        if let Some(b) = bytes
            && matches!(self.format.kind, FormatKind::Json | FormatKind::JsonSr)
            && self.wraps()
        {
            let start = columns.first().map_or(0, ColumnBuilder::len);
            if flat_object(b, &self.names, &self.unused, columns, cache).is_some() {
                return Ok(());
            }
            // Not a plain flat object, or a value of the wrong type: the full decoder says which.
            columns.iter_mut().for_each(|c| c.truncate(start));
        }
        cells.clear();
        self.decode_unframed(bytes, cells)?;
        for (column, cell) in columns.iter_mut().zip(cells.drain(..)) {
            column.push(cell)?;
        }
        Ok(())
    }

    /// Appends one cell per column to `out` (nulls for a missing payload), or says why the bytes are bad.
    pub fn decode<'a>(
        &self,
        bytes: Option<&'a [u8]>,
        out: &mut Vec<Cell<'a>>,
    ) -> Result<(), String> {
        match (bytes, self.format.kind) {
            (Some(b), FormatKind::JsonSr) => self.decode_unframed(Some(unframe(b)?.1), out),
            _ => self.decode_unframed(bytes, out),
        }
    }

    /// [`decode`](Self::decode) after JSON_SR's framing is taken off.
    fn decode_unframed<'a>(
        &self,
        bytes: Option<&'a [u8]>,
        out: &mut Vec<Cell<'a>>,
    ) -> Result<(), String> {
        let start = out.len();
        let Some(bytes) = bytes else {
            out.resize_with(start + self.width(), || Cell::Null);
            return Ok(());
        };
        if self.names.is_empty() {
            return Ok(());
        }
        match self.format.kind {
            FormatKind::None => Ok(()),
            FormatKind::Kafka => {
                out.push(kafka_cell(bytes, &self.types[0])?);
                Ok(())
            }
            FormatKind::Delimited => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| "DELIMITED payload is not valid UTF-8".to_string())?;
                split_delimited(text, self.format.delimiter, out)?;
                let found = out.len() - start;
                if found != self.width() {
                    out.truncate(start);
                    return Err(format!(
                        "Unexpected field count, csvFields:{found} schemaFields:{}",
                        self.width()
                    ));
                }
                Ok(())
            }
            FormatKind::Avro => {
                let avro = self.avro.as_ref().ok_or_else(|| {
                    "AVRO needs a schema registry: set ksql.schema.registry.url".to_string()
                })?;
                out.resize_with(start + self.width(), || Cell::Null);
                avro.decode(bytes, &self.unused, &mut out[start..])
                    .inspect_err(|_| out.truncate(start))
            }
            FormatKind::Protobuf | FormatKind::ProtobufNoSr => {
                let protobuf = self.protobuf.as_ref().ok_or_else(|| {
                    "PROTOBUF needs a schema registry: set ksql.schema.registry.url".to_string()
                })?;
                out.resize_with(start + self.width(), || Cell::Null);
                protobuf
                    .decode(bytes, &mut out[start..])
                    .inspect_err(|_| out.truncate(start))
            }
            FormatKind::Json | FormatKind::JsonSr => {
                if !self.wraps() {
                    let mut de = serde_json::Deserializer::from_slice(bytes);
                    let cell = CellSeed.deserialize(&mut de).map_err(json_error)?;
                    de.end().map_err(json_error)?;
                    out.push(cell);
                    return Ok(());
                }
                out.resize_with(start + self.width(), || Cell::Null);
                let mut de = serde_json::Deserializer::from_slice(bytes);
                let result = RowSeed {
                    names: &self.names,
                    unused: &self.unused,
                    cells: &mut out[start..],
                }
                .deserialize(&mut de)
                .and_then(|_| de.end());
                if let Err(e) = result {
                    out.truncate(start);
                    return Err(json_error(e));
                }
                Ok(())
            }
        }
    }
}

fn json_error(e: serde_json::Error) -> String {
    format!("Failed to deserialize JSON: {e}")
}

/// Reads a KAFKA-format primitive.
fn kafka_cell<'a>(bytes: &'a [u8], t: &SqlType) -> Result<Cell<'a>, String> {
    let fixed = |n: usize| -> Result<&'a [u8], String> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(format!(
                "Size of data received by the KAFKA {t} deserializer is not {n}: got {} bytes",
                bytes.len()
            ))
        }
    };
    Ok(match t {
        SqlType::Int => {
            Cell::Int(i32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default()) as i64)
        }
        SqlType::Bigint => Cell::Int(i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default())),
        SqlType::Double => {
            Cell::Float(f64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default()))
        }
        SqlType::String => {
            Cell::Str(Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| {
                "KAFKA STRING payload is not valid UTF-8".to_string()
            })?))
        }
        SqlType::Bytes => Cell::Bytes(Cow::Borrowed(bytes)),
        other => return Err(format!("The KAFKA format does not support {other}")),
    })
}

/// Splits one DELIMITED line into string cells; `""` escapes a quote inside a quoted field; empty is null.
fn split_delimited<'a>(
    text: &'a str,
    delimiter: char,
    out: &mut Vec<Cell<'a>>,
) -> Result<(), String> {
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    let mut rest = text;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if quoted[i + 1..].starts_with('"') {
                        value.push('"');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
            let end =
                end.ok_or_else(|| "Unterminated quoted field in DELIMITED payload".to_string())?;
            out.push(Cell::Str(Cow::Owned(value)));
            rest = &quoted[end..];
            match rest.chars().next() {
                None => return Ok(()),
                Some(c) if c == delimiter => rest = &rest[c.len_utf8()..],
                Some(_) => {
                    return Err("Unexpected character after a quoted DELIMITED field".to_string());
                }
            }
        } else {
            match rest.find(delimiter) {
                Some(i) => {
                    out.push(delimited_cell(&rest[..i]));
                    rest = &rest[i + delimiter.len_utf8()..];
                }
                None => {
                    out.push(delimited_cell(rest));
                    return Ok(());
                }
            }
        }
    }
}

fn delimited_cell(s: &str) -> Cell<'_> {
    if s.is_empty() {
        Cell::Null
    } else {
        Cell::Str(Cow::Borrowed(s))
    }
}

/// Deserializes one JSON object into the cells of the columns it names (matched case-insensitively).
struct RowSeed<'s, 'a> {
    names: &'s [String],
    unused: &'s [bool],
    cells: &'s mut [Cell<'a>],
}

impl<'de, 's> DeserializeSeed<'de> for RowSeed<'s, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 's> Visitor<'de> for RowSeed<'s, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let idx = self
                .names
                .iter()
                .position(|n| n.as_str() == key.as_ref())
                .or_else(|| self.names.iter().position(|n| n.eq_ignore_ascii_case(&key)));
            match idx {
                Some(i) if !self.unused[i] => self.cells[i] = map.next_value_seed(CellSeed)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the input unless it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// Deserializes any JSON value into a [`Cell`], borrowing strings where the input allows.
struct CellSeed;

impl<'de> DeserializeSeed<'de> for CellSeed {
    type Value = Cell<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cell<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed {
    type Value = Cell<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Cell<'de>, E> {
        Ok(Cell::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Cell<'de>, E> {
        Ok(Cell::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Cell<'de>, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Cell::Int(i),
            Err(_) => Cell::Number(Cow::Owned(v.to_string())),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Cell<'de>, E> {
        Ok(Cell::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Cell<'de>, A::Error> {
        let v: Value =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Cell::Json(Box::new(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cell<'de>, A::Error> {
        let v: Value =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Cell::Json(Box::new(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(spec: &[(&str, SqlType)]) -> Vec<(String, SqlType)> {
        spec.iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect()
    }

    #[test]
    fn json_fields_match_case_insensitively_and_missing_ones_are_null() {
        let d = PartDecoder::new(
            Format::new(FormatKind::Json),
            cols(&[
                ("SENSOR_ID", SqlType::String),
                ("TEMP", SqlType::Double),
                ("RPM", SqlType::Int),
            ]),
        );
        let mut out = Vec::new();
        d.decode(
            Some(br#"{"sensor_id":"s-17","temp":21.5,"extra":[1,2]}"#),
            &mut out,
        )
        .unwrap();
        assert!(matches!(&out[0], Cell::Str(s) if s == "s-17"));
        assert!(matches!(out[1], Cell::Float(f) if f == 21.5));
        assert!(matches!(out[2], Cell::Null));
        let mut out = Vec::new();
        assert!(d.decode(Some(b"{not json"), &mut out).is_err());
        assert!(out.is_empty(), "a failed record leaves no cells behind");
    }

    #[test]
    fn delimited_fields_split_with_quotes() {
        let d = PartDecoder::new(
            Format::new(FormatKind::Delimited),
            cols(&[
                ("A", SqlType::String),
                ("B", SqlType::String),
                ("C", SqlType::Int),
            ]),
        );
        let mut out = Vec::new();
        d.decode(Some(br#""x,""y""",,3"#), &mut out).unwrap();
        assert!(matches!(&out[0], Cell::Str(s) if s == "x,\"y\""));
        assert!(matches!(out[1], Cell::Null));
        let mut out = Vec::new();
        assert_eq!(
            d.decode(Some(b"1,2"), &mut out).unwrap_err(),
            "Unexpected field count, csvFields:2 schemaFields:3"
        );
    }

    #[test]
    fn avro_reads_with_the_writers_schema_and_rejects_unframed_payloads() {
        use crate::format::avro::schema::AvroSchema;
        use crate::format::avro::write::write_json;
        use crate::format::framing::frame_header;
        use crate::registry::{MemoryRegistry, RegisteredSchema, SchemaKind};

        let registry = MemoryRegistry::shared();
        // The writer has a field the reader lacks, and its fields in another order.
        let writer = r#"{"type":"record","name":"W","fields":[
            {"name":"EXTRA","type":"string"},{"name":"temp","type":"double"},{"name":"ID","type":"long"}]}"#;
        let id = registry
            .register(
                "t-value",
                &RegisteredSchema {
                    kind: SchemaKind::Avro,
                    text: writer.into(),
                },
            )
            .unwrap();
        let mut payload = frame_header(id);
        write_json(
            &serde_json::json!({"EXTRA": "x", "temp": 21.5, "ID": 7}),
            &AvroSchema::parse(writer).unwrap(),
            &mut payload,
        )
        .unwrap();
        let d = PartDecoder::new(
            Format::new(FormatKind::Avro),
            cols(&[("ID", SqlType::Bigint), ("TEMP", SqlType::Double)]),
        )
        .with_registry(&registry);
        let mut out = Vec::new();
        d.decode(Some(&payload), &mut out).unwrap();
        assert!(matches!(out[0], Cell::Int(7)));
        assert!(matches!(out[1], Cell::Float(f) if f == 21.5));
        let mut out = Vec::new();
        let e = d.decode(Some(br#"{"ID":7}"#), &mut out).unwrap_err();
        assert!(e.contains("Unknown magic byte"), "{e}");
        assert!(out.is_empty());
        let e = d.decode(Some(&frame_header(99)), &mut out).unwrap_err();
        assert!(e.contains("Schema 99 not found"), "{e}");
    }

    #[test]
    fn kafka_primitives_are_big_endian() {
        let d = PartDecoder::new(
            Format::new(FormatKind::Kafka),
            cols(&[("K", SqlType::Bigint)]),
        );
        let bytes = 42i64.to_be_bytes();
        let mut out = Vec::new();
        d.decode(Some(&bytes), &mut out).unwrap();
        assert!(matches!(out[0], Cell::Int(42)));
        assert!(d.decode(Some(&[1, 2]), &mut Vec::new()).is_err());
    }
}
