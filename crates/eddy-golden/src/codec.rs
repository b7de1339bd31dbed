//! Converts the JSON keys and values of test files to record bytes in a topic's formats, and back.

use serde_json::Value;

use eddy_runtime::format::window::{Bounds, append_window, split_windowed_key};
use eddy_sql::SqlType;
use eddy_sql::catalog::{Format, FormatKind, Source};
use eddy_sql::statement::ColumnRole;
use eddy_sql::window::{KeyWindow, WindowType};

/// How one part (key or value) of a topic's records is serialized.
#[derive(Debug, Clone)]
pub struct PartCodec {
    pub format: Format,
    pub types: Vec<SqlType>,
    /// How keys are windowed (key part only).
    pub window: Option<KeyWindow>,
}

impl PartCodec {
    /// The codec of a source's key or value part.
    pub fn of(source: &Source, role: ColumnRole) -> Self {
        let format = if role == ColumnRole::Key {
            source.key_format
        } else {
            source.value_format
        };
        PartCodec {
            format,
            window: source.window.filter(|_| role == ColumnRole::Key),
            types: source
                .columns
                .iter()
                .filter(|c| c.role == role)
                .map(|c| c.sql_type.clone())
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
            FormatKind::Delimited => match v {
                Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string().into_bytes(),
            },
            FormatKind::Kafka => {
                let t = self.types.first().cloned().unwrap_or(SqlType::String);
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
        match self.format.kind {
            FormatKind::None => Value::Null,
            FormatKind::Json => serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
            FormatKind::Delimited => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            FormatKind::Kafka => match (self.types.first(), bytes.len()) {
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
}
