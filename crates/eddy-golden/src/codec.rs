//! Converts the JSON keys and values of test files to record bytes in a topic's formats, and back.

use serde_json::Value;

use eddy_sql::SqlType;
use eddy_sql::catalog::{Format, FormatKind, Source};
use eddy_sql::statement::ColumnRole;

/// How one part (key or value) of a topic's records is serialized.
#[derive(Debug, Clone)]
pub struct PartCodec {
    pub format: Format,
    pub types: Vec<SqlType>,
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
            types: source
                .columns
                .iter()
                .filter(|c| c.role == role)
                .map(|c| c.sql_type.clone())
                .collect(),
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
