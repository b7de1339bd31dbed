//! Converts the JSON keys and values of test files to record bytes in a topic's formats, and back.

use std::sync::Arc;

use serde_json::Value;

use eddy_runtime::format::avro::read::{Reader, read_json};
use eddy_runtime::format::avro::schema::AvroSchema;
use eddy_runtime::format::avro::write::write_json;
use eddy_runtime::format::framing::{frame_header, unframe};
use eddy_runtime::format::protobuf::schema::ProtoSchema;
use eddy_runtime::format::protobuf::wire::{read_message_json, write_message_json};
use eddy_runtime::format::protobuf::{read_message_indexes, write_message_indexes};
use eddy_runtime::format::window::{Bounds, append_window, split_windowed_key};
use eddy_runtime::registry::{SchemaRegistry, subject};
use eddy_sql::SqlType;
use eddy_sql::catalog::{Format, FormatKind, Source};
use eddy_sql::statement::ColumnRole;
use eddy_sql::window::{KeyWindow, WindowType};

/// How one part (key or value) of a topic's records is serialized.
#[derive(Debug, Clone)]
pub struct PartCodec {
    pub format: Format,
    /// The part's columns (name, type).
    pub columns: Vec<(String, SqlType)>,
    /// How keys are windowed (key part only).
    pub window: Option<KeyWindow>,
    /// Where schema-registry formats find their schemas, and the part's subject.
    pub registry: Arc<dyn SchemaRegistry>,
    pub subject: String,
    /// The PROTOBUF message the part's records are, when the source names it.
    pub schema_name: Option<String>,
}

impl PartCodec {
    /// The codec of a source's key or value part.
    pub fn of(source: &Source, role: ColumnRole, registry: &Arc<dyn SchemaRegistry>) -> Self {
        let format = if role == ColumnRole::Key {
            source.key_format
        } else {
            source.value_format
        };
        PartCodec {
            format,
            registry: registry.clone(),
            subject: subject(&source.topic, role == ColumnRole::Key),
            schema_name: source.schema_names[usize::from(role == ColumnRole::Value)].clone(),
            window: source.window.filter(|_| role == ColumnRole::Key),
            columns: source
                .columns
                .iter()
                .filter(|c| c.role == role)
                .map(|c| (c.name.clone(), c.sql_type.clone()))
                .collect(),
        }
    }

    /// Serializes a test-file key with its `window` (for windowed keys).
    pub fn key_to_bytes(
        &self,
        key: &Value,
        window: Option<&Value>,
    ) -> Result<Option<Vec<u8>>, String> {
        let inner = self.to_bytes(key)?;
        let (Some(w), Some(window)) = (&self.window, window) else {
            return Ok(inner);
        };
        let bound = |name: &str| {
            window
                .get(name)
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("window {window} has no {name}"))
        };
        let mut bytes = inner.unwrap_or_default();
        let bounds = Bounds {
            start: bound("start")?,
            end: bound("end")?,
        };
        append_window(&mut bytes, w.window_type, bounds);
        Ok(Some(bytes))
    }

    /// Deserializes a key into the JSON of a test file, with its window as a test file shows it.
    pub fn key_to_json(&self, bytes: Option<&[u8]>) -> (Value, Option<Value>) {
        let (Some(w), Some(b)) = (&self.window, bytes) else {
            return (self.to_json(bytes), None);
        };
        match split_windowed_key(b, w) {
            Some((inner, bounds)) => {
                let kind = if w.window_type == WindowType::Session {
                    "session"
                } else {
                    "time"
                };
                let window =
                    serde_json::json!({"start": bounds.start, "end": bounds.end, "type": kind});
                (self.to_json(Some(inner)), Some(window))
            }
            None => (self.to_json(bytes), None),
        }
    }

    /// Serializes a test-file value.
    pub fn to_bytes(&self, v: &Value) -> Result<Option<Vec<u8>>, String> {
        if v.is_null() {
            return Ok(None);
        }
        Ok(Some(match self.format.kind {
            FormatKind::None => return Ok(None),
            FormatKind::Json => serde_json::to_vec(v).map_err(|e| e.to_string())?,
            FormatKind::JsonSr => {
                let (id, _) = self.latest()?;
                let mut out = frame_header(id);
                out.extend(serde_json::to_vec(v).map_err(|e| e.to_string())?);
                out
            }
            FormatKind::Avro => {
                let (id, text) = self.latest()?;
                let mut out = frame_header(id);
                write_json(v, &AvroSchema::parse(&text)?, &mut out)?;
                out
            }
            FormatKind::Protobuf => {
                let (id, text) = self.latest()?;
                let schema = ProtoSchema::parse(&text)?;
                let message = self
                    .schema_name
                    .as_deref()
                    .and_then(|n| schema.message_named(n))
                    .unwrap_or(schema.top[0]);
                let mut out = frame_header(id);
                write_message_indexes(&schema.path_of(message), &mut out);
                write_message_json(&schema, message, v, &mut out)?;
                out
            }
            FormatKind::ProtobufNoSr => {
                let schema = ProtoSchema::for_columns(&self.columns);
                let mut out = Vec::new();
                write_message_json(&schema, schema.top[0], v, &mut out)?;
                out
            }
            FormatKind::Delimited => match v {
                Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string().into_bytes(),
            },
            FormatKind::Kafka => {
                let t = self.column_type().cloned().unwrap_or(SqlType::String);
                match (t, v) {
                    (SqlType::Int, Value::Number(n)) => (n.as_i64().ok_or("not an INT")? as i32)
                        .to_be_bytes()
                        .to_vec(),
                    (SqlType::Bigint, Value::Number(n)) => {
                        n.as_i64().ok_or("not a BIGINT")?.to_be_bytes().to_vec()
                    }
                    (SqlType::Double, Value::Number(n)) => {
                        n.as_f64().ok_or("not a DOUBLE")?.to_be_bytes().to_vec()
                    }
                    (SqlType::Bytes, Value::String(s)) => {
                        use base64::Engine;
                        base64::engine::general_purpose::STANDARD
                            .decode(s)
                            .map_err(|e| e.to_string())?
                    }
                    (SqlType::Int | SqlType::Bigint | SqlType::Double, Value::String(s)) => {
                        s.as_bytes().to_vec()
                    }
                    (_, Value::String(s)) => s.as_bytes().to_vec(),
                    (_, other) => other.to_string().into_bytes(),
                }
            }
        }))
    }

    /// Deserializes record bytes into the JSON a test file would show.
    pub fn to_json(&self, bytes: Option<&[u8]>) -> Value {
        let Some(bytes) = bytes else {
            return Value::Null;
        };
        let lossy = || Value::String(String::from_utf8_lossy(bytes).into_owned());
        match self.format.kind {
            FormatKind::None => Value::Null,
            FormatKind::Json => serde_json::from_slice(bytes).unwrap_or_else(|_| lossy()),
            FormatKind::JsonSr => unframe(bytes)
                .ok()
                .and_then(|(_, json)| serde_json::from_slice(json).ok())
                .unwrap_or_else(lossy),
            FormatKind::Avro => self
                .avro_json(bytes)
                .unwrap_or_else(|e| Value::String(format!("undecodable AVRO ({e}): {}", lossy()))),
            FormatKind::Protobuf | FormatKind::ProtobufNoSr => {
                self.protobuf_json(bytes).unwrap_or_else(|e| {
                    Value::String(format!("undecodable PROTOBUF ({e}): {}", lossy()))
                })
            }
            FormatKind::Delimited => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            FormatKind::Kafka => match (self.column_type(), bytes.len()) {
                (Some(SqlType::Int), 4) => {
                    Value::from(i32::from_be_bytes(bytes.try_into().unwrap_or_default()))
                }
                (Some(SqlType::Bigint), 8) => {
                    Value::from(i64::from_be_bytes(bytes.try_into().unwrap_or_default()))
                }
                (Some(SqlType::Double), 8) => {
                    Value::from(f64::from_be_bytes(bytes.try_into().unwrap_or_default()))
                }
                (Some(SqlType::Bytes), _) => {
                    use base64::Engine;
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                _ => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            },
        }
    }

    /// The latest schema registered for this part, with its id.
    fn latest(&self) -> Result<(u32, String), String> {
        match self.registry.latest(&self.subject) {
            Ok(Some((id, schema))) => Ok((id, schema.text)),
            Ok(None) => Err(format!("no schema is registered under {}", self.subject)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// An AVRO payload as JSON, read with its writer's schema.
    fn avro_json(&self, bytes: &[u8]) -> Result<Value, String> {
        let (id, body) = unframe(bytes)?;
        let schema = self.registry.by_id(id).map_err(|e| e.to_string())?;
        let mut r = Reader::new(body);
        read_json(&mut r, &AvroSchema::parse(&schema.text)?)
    }

    /// A PROTOBUF payload as JSON, read with its writer's schema (PROTOBUF_NOSR: the columns').
    fn protobuf_json(&self, bytes: &[u8]) -> Result<Value, String> {
        if self.format.kind == FormatKind::ProtobufNoSr {
            let schema = ProtoSchema::for_columns(&self.columns);
            return read_message_json(&schema, schema.top[0], bytes);
        }
        let (id, rest) = unframe(bytes)?;
        let (path, body) = read_message_indexes(rest)?;
        let registered = self.registry.by_id(id).map_err(|e| e.to_string())?;
        let schema = ProtoSchema::parse(&registered.text)?;
        let message = schema
            .message_at(&path)
            .ok_or_else(|| format!("no message at {path:?}"))?;
        read_message_json(&schema, message, body)
    }

    /// The type of the part's first column (KAFKA has only one).
    fn column_type(&self) -> Option<&SqlType> {
        self.columns.first().map(|(_, t)| t)
    }
}
