//! Encoding the key or value columns of a batch into one payload per row (JSON, JSON_SR, AVRO,
//! DELIMITED, KAFKA, NONE).

use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, MapArray, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Float64Type, Int32Type, Int64Type, Time32MillisecondType,
    TimeUnit, TimestampMillisecondType,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use eddy_common::{Result, exec_err};
use eddy_sql::SqlType;
use eddy_sql::catalog::{Format, FormatKind};

use super::avro::AvroEncoder;
use super::framing::frame_header;
use super::json_schema;
use super::protobuf::ProtobufEncoder;
use crate::registry::{RegisteredSchema, SchemaKind, SchemaRegistry};

use eddy_sql::java::format_double;

/// Encodes the key or the value part of output rows.
#[derive(Debug, Clone)]
pub struct PartEncoder {
    format: Format,
    columns: Vec<(String, SqlType)>,
    /// The schema of schema-registry formats (set by [`PartEncoder::with_registry`]).
    schema: Option<SchemaEncoding>,
}

/// How a schema-registry format writes.
#[derive(Debug, Clone)]
enum SchemaEncoding {
    Avro(AvroEncoder),
    Protobuf(ProtobufEncoder),
    /// JSON framed with the id of its registered JSON schema.
    JsonSr(u32),
}

impl PartEncoder {
    /// An encoder of `columns` (name, type) in `format`.
    pub fn new(format: Format, columns: Vec<(String, SqlType)>) -> Self {
        PartEncoder {
            format,
            columns,
            schema: None,
        }
    }

    /// Registers the schema of a schema-registry format under `subject` (the key's when `key`).
    pub fn with_registry(
        mut self,
        registry: &dyn SchemaRegistry,
        subject: &str,
        key: bool,
    ) -> Result<Self> {
        if self.columns.is_empty() {
            return Ok(self);
        }
        let wrap = self.format.wrap_single_value;
        self.schema = match self.format.kind {
            FormatKind::Avro => Some(SchemaEncoding::Avro(AvroEncoder::new(
                registry,
                subject,
                &self.columns,
                wrap,
                key,
            )?)),
            FormatKind::JsonSr => {
                let schema = RegisteredSchema {
                    kind: SchemaKind::Json,
                    text: json_schema::for_columns(&self.columns, wrap).to_string(),
                };
                Some(SchemaEncoding::JsonSr(registry.register(subject, &schema)?))
            }
            FormatKind::Protobuf => Some(SchemaEncoding::Protobuf(ProtobufEncoder::new(
                Some((registry, subject)),
                &self.columns,
            )?)),
            FormatKind::ProtobufNoSr => Some(SchemaEncoding::Protobuf(ProtobufEncoder::new(
                None,
                &self.columns,
            )?)),
            _ => None,
        };
        Ok(self)
    }

    /// One payload per row (`None` when there is nothing to write, e.g. no key columns).
    pub fn encode(&self, arrays: &[ArrayRef], rows: usize) -> Result<Vec<Option<Vec<u8>>>> {
        if arrays.is_empty() || self.format.kind == FormatKind::None {
            return Ok(vec![None; rows]);
        }
        let unregistered = || {
            exec_err!(
                "The {} format needs a schema registry: set ksql.schema.registry.url",
                self.format.kind.name()
            )
        };
        match self.format.kind {
            FormatKind::None => Ok(vec![None; rows]),
            FormatKind::Kafka => kafka(&arrays[0]),
            FormatKind::Delimited => self.delimited(arrays, rows),
            FormatKind::Json => self.json(arrays, rows),
            FormatKind::JsonSr => {
                let Some(SchemaEncoding::JsonSr(id)) = &self.schema else {
                    return Err(unregistered());
                };
                let mut out = self.json(arrays, rows)?;
                for payload in out.iter_mut().flatten() {
                    let mut framed = frame_header(*id);
                    framed.append(payload);
                    *payload = framed;
                }
                Ok(out)
            }
            FormatKind::Avro => match &self.schema {
                Some(SchemaEncoding::Avro(avro)) => avro
                    .encode(arrays, rows)
                    .map_err(|e| exec_err!("Error serializing AVRO: {e}")),
                _ => Err(unregistered()),
            },
            FormatKind::Protobuf | FormatKind::ProtobufNoSr => match &self.schema {
                Some(SchemaEncoding::Protobuf(p)) => p
                    .encode(arrays, rows)
                    .map_err(|e| exec_err!("Error serializing PROTOBUF: {e}")),
                _ => Err(unregistered()),
            },
        }
    }

    fn json(&self, arrays: &[ArrayRef], rows: usize) -> Result<Vec<Option<Vec<u8>>>> {
        let arrays: Vec<ArrayRef> = arrays
            .iter()
            .map(|a| json_ready(a, true))
            .collect::<Result<_>>()?;
        let options = arrow_json::writer::EncoderOptions::default().with_explicit_nulls(true);
        let (field, array): (Arc<Field>, ArrayRef) =
            if arrays.len() == 1 && !self.format.wrap_single_value {
                (
                    Arc::new(Field::new("v", arrays[0].data_type().clone(), true)),
                    arrays[0].clone(),
                )
            } else {
                let fields: Vec<Field> = self
                    .columns
                    .iter()
                    .zip(&arrays)
                    .map(|((n, _), a)| Field::new(n, a.data_type().clone(), true))
                    .collect();
                let s = StructArray::try_new(fields.into(), arrays, None)
                    .map_err(|e| exec_err!("{e}"))?;
                (
                    Arc::new(Field::new("v", s.data_type().clone(), true)),
                    Arc::new(s),
                )
            };
        let mut encoder = arrow_json::writer::make_encoder(&field, array.as_ref(), &options)
            .map_err(|e| exec_err!("{e}"))?;
        let mut out = Vec::with_capacity(rows);
        // Each row is written into one scratch buffer and copied out at its exact size: one
        // allocation per row, none wasted on growing.
        let mut scratch = Vec::with_capacity(256);
        for i in 0..rows {
            if array.is_null(i) {
                out.push(Some(b"null".to_vec()));
                continue;
            }
            scratch.clear();
            encoder.encode(i, &mut scratch);
            out.push(Some(scratch.as_slice().to_vec()));
        }
        Ok(out)
    }

    fn delimited(&self, arrays: &[ArrayRef], rows: usize) -> Result<Vec<Option<Vec<u8>>>> {
        let options = FormatOptions::default();
        let formatters: Vec<ArrayFormatter> = arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| exec_err!("{e}"))?;
        let mut out = Vec::with_capacity(rows);
        let mut delim = [0u8; 4];
        let delim = self
            .format
            .delimiter
            .encode_utf8(&mut delim)
            .as_bytes()
            .to_vec();
        for i in 0..rows {
            let mut line = Vec::with_capacity(32);
            for (c, (a, f)) in arrays.iter().zip(&formatters).enumerate() {
                if c > 0 {
                    line.extend_from_slice(&delim);
                }
                if a.is_null(i) {
                    continue;
                }
                let text = match a.data_type() {
                    DataType::Float64 => format_double(a.as_primitive::<Float64Type>().value(i)),
                    // ksqlDB writes a TIMESTAMP as epoch milliseconds in DELIMITED values, a DATE as
                    // days since the epoch and a TIME as milliseconds since midnight.
                    DataType::Timestamp(TimeUnit::Millisecond, _) => a
                        .as_primitive::<TimestampMillisecondType>()
                        .value(i)
                        .to_string(),
                    DataType::Date32 => a.as_primitive::<Date32Type>().value(i).to_string(),
                    DataType::Binary => base64::engine::general_purpose::STANDARD
                        .encode(a.as_binary::<i32>().value(i)),
                    DataType::Time32(TimeUnit::Millisecond) => a
                        .as_primitive::<Time32MillisecondType>()
                        .value(i)
                        .to_string(),
                    _ => f.value(i).to_string(),
                };
                if needs_quotes(&text, c == 0, self.format.delimiter) {
                    line.push(b'"');
                    line.extend_from_slice(text.replace('"', "\"\"").as_bytes());
                    line.push(b'"');
                } else {
                    line.extend_from_slice(text.as_bytes());
                }
            }
            out.push(Some(line));
        }
        Ok(out)
    }
}

/// Whether a DELIMITED field is quoted — the rules of the CSV library ksqlDB writes with: a first field
/// that is empty or starts with anything but a letter or digit, a field starting with a character up to
/// `#` or ending with one up to a space, and a field holding the delimiter, a quote or a line break.
fn needs_quotes(text: &str, first: bool, delimiter: char) -> bool {
    let (Some(head), Some(tail)) = (text.chars().next(), text.chars().last()) else {
        return first;
    };
    (first && !head.is_ascii_alphanumeric())
        || head <= '#'
        || tail <= ' '
        || text.contains([delimiter, '"', '\n', '\r'])
}

/// Each row of a batch as a JSON array of its values (the row format of ksqlDB's query endpoints).
pub fn json_rows(batch: &datafusion::arrow::array::RecordBatch) -> Result<Vec<String>> {
    let options = arrow_json::writer::EncoderOptions::default().with_explicit_nulls(true);
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|a| json_ready(a, false))
        .collect::<Result<_>>()?;
    let fields: Vec<Arc<Field>> = columns
        .iter()
        .zip(batch.schema().fields())
        .map(|(a, f)| Arc::new(Field::new(f.name(), a.data_type().clone(), true)))
        .collect();
    let mut encoders = fields
        .iter()
        .zip(&columns)
        .map(|(f, a)| arrow_json::writer::make_encoder(f, a.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| exec_err!("{e}"))?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut buf = Vec::with_capacity(64);
        buf.push(b'[');
        for (c, e) in encoders.iter_mut().enumerate() {
            if c > 0 {
                buf.push(b',');
            }
            if e.is_null(i) {
                buf.extend_from_slice(b"null");
            } else {
                e.encode(i, &mut buf);
            }
        }
        buf.push(b']');
        rows.push(String::from_utf8(buf).map_err(|e| exec_err!("{e}"))?);
    }
    Ok(rows)
}

/// ksqlDB writes BYTES as base64 in JSON, nested ones too; in records (`times`) also TIMESTAMP as
/// epoch ms, DATE as epoch days and TIME as ms of day (query rows show those as text).
fn json_ready(a: &ArrayRef, times: bool) -> Result<ArrayRef> {
    let err = |e: datafusion::arrow::error::ArrowError| exec_err!("{e}");
    let target = match a.data_type() {
        DataType::List(_) => {
            let list = a.as_list::<i32>();
            let values = json_ready(list.values(), times)?;
            let field = Arc::new(Field::new("item", values.data_type().clone(), true));
            let list =
                ListArray::try_new(field, list.offsets().clone(), values, list.nulls().cloned())
                    .map_err(err)?;
            return Ok(Arc::new(list));
        }
        DataType::Map(entries, sorted) => {
            let map = a.as_map();
            let converted = json_ready(&(Arc::new(map.entries().clone()) as ArrayRef), times)?;
            let entries = Arc::new(Field::new(
                entries.name(),
                converted.data_type().clone(),
                false,
            ));
            let map = MapArray::try_new(
                entries,
                map.offsets().clone(),
                converted.as_struct().clone(),
                map.nulls().cloned(),
                *sorted,
            )
            .map_err(err)?;
            return Ok(Arc::new(map));
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let columns = s
                .columns()
                .iter()
                .map(|c| json_ready(c, times))
                .collect::<Result<Vec<_>>>()?;
            let fields: Vec<Field> = fields
                .iter()
                .zip(&columns)
                .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
                .collect();
            let s =
                StructArray::try_new(fields.into(), columns, s.nulls().cloned()).map_err(err)?;
            return Ok(Arc::new(s));
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            return Ok(base64_strings(a));
        }
        _ if !times => return Ok(a.clone()),
        DataType::Timestamp(_, _) | DataType::Date64 => DataType::Int64,
        DataType::Date32 | DataType::Time32(_) => DataType::Int32,
        DataType::Time64(_) => DataType::Int64,
        DataType::Utf8View => DataType::Utf8,
        _ => return Ok(a.clone()),
    };
    let a = match a.data_type() {
        DataType::Timestamp(_, _) => cast(
            a,
            &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None),
        )
        .map_err(|e| exec_err!("{e}"))?,
        _ => a.clone(),
    };
    cast(&a, &target).map_err(|e| exec_err!("{e}"))
}

/// ksqlDB writes BYTES as base64 strings in JSON.
fn base64_strings(a: &ArrayRef) -> ArrayRef {
    let bin = cast(a, &DataType::Binary).unwrap_or_else(|_| a.clone());
    let bin = bin.as_binary::<i32>();
    let strings: datafusion::arrow::array::StringArray = bin
        .iter()
        .map(|v| v.map(|b| base64::engine::general_purpose::STANDARD.encode(b)))
        .collect();
    Arc::new(strings)
}

fn kafka(a: &ArrayRef) -> Result<Vec<Option<Vec<u8>>>> {
    let rows = a.len();
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        if a.is_null(i) {
            out.push(None);
            continue;
        }
        let bytes = match a.data_type() {
            DataType::Int32 => a
                .as_primitive::<Int32Type>()
                .value(i)
                .to_be_bytes()
                .to_vec(),
            DataType::Int64 => a
                .as_primitive::<Int64Type>()
                .value(i)
                .to_be_bytes()
                .to_vec(),
            DataType::Float64 => a
                .as_primitive::<Float64Type>()
                .value(i)
                .to_be_bytes()
                .to_vec(),
            DataType::Utf8 => a.as_string::<i32>().value(i).as_bytes().to_vec(),
            DataType::LargeUtf8 => a.as_string::<i64>().value(i).as_bytes().to_vec(),
            DataType::Utf8View => a.as_string_view().value(i).as_bytes().to_vec(),
            DataType::Binary => a.as_binary::<i32>().value(i).to_vec(),
            other => {
                let casted = match other {
                    DataType::Int8 | DataType::Int16 => cast(a, &DataType::Int32),
                    DataType::Float32 => cast(a, &DataType::Float64),
                    _ => {
                        return Err(exec_err!(
                            "The KAFKA format cannot write values of type {other}"
                        ));
                    }
                }
                .map_err(|e| exec_err!("{e}"))?;
                return kafka(&casted);
            }
        };
        out.push(Some(bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};

    fn columns(names: &[&str]) -> Vec<(String, SqlType)> {
        names
            .iter()
            .map(|n| (n.to_string(), SqlType::String))
            .collect()
    }

    #[test]
    fn json_rows_carry_explicit_nulls() {
        let e = PartEncoder::new(Format::new(FormatKind::Json), columns(&["A", "B"]));
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let b: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), Some("y")]));
        let out = e.encode(&[a, b], 2).unwrap();
        assert_eq!(out[0].as_deref(), Some(&br#"{"A":1,"B":"x"}"#[..]));
        assert_eq!(out[1].as_deref(), Some(&br#"{"A":null,"B":"y"}"#[..]));
    }

    #[test]
    fn delimited_rows_quote_when_needed() {
        let e = PartEncoder::new(Format::new(FormatKind::Delimited), columns(&["A", "B"]));
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("a,b"), None]));
        let b: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.5]));
        let out = e.encode(&[a, b], 2).unwrap();
        assert_eq!(out[0].as_deref(), Some(&b"\"a,b\",1.0"[..]));
        assert_eq!(out[1].as_deref(), Some(&b",2.5"[..]));
        let none: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>]));
        assert_eq!(
            e.encode(&[none.clone(), none], 1).unwrap()[0].as_deref(),
            Some(&b","[..]),
            "nulls are empty fields"
        );
        let text: ArrayRef = Arc::new(StringArray::from(vec!["-1", " x"]));
        let word: ArrayRef = Arc::new(StringArray::from(vec!["!", "y\t"]));
        let out = e.encode(&[text, word], 2).unwrap();
        assert_eq!(out[0].as_deref(), Some(&b"\"-1\",\"!\""[..]));
        assert_eq!(out[1].as_deref(), Some(&b"\" x\",\"y\t\""[..]));
    }
}
