//! JSON schemas of JSON_SR: the one registered for columns, in the shape ksqlDB (through Kafka
//! Connect) gives it (optional values are `oneOf` null and the type, with Connect's type names), and
//! the SQL types of a registered one.

use serde_json::{Map, Value, json};

use eddy_sql::SqlType;

/// The schema of `columns`: an object of their fields, or with `wrap` false the single column's type.
pub fn for_columns(columns: &[(String, SqlType)], wrap: bool) -> Value {
    match columns {
        [(_, t)] if !wrap => optional(of_type(t)),
        _ => object(columns),
    }
}

fn object(fields: &[(String, SqlType)]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .enumerate()
        .map(|(i, (n, t))| {
            let mut field = optional(of_type(t));
            field["connect.index"] = json!(i);
            (n.clone(), field)
        })
        .collect();
    json!({"type": "object", "properties": properties})
}

fn optional(t: Value) -> Value {
    json!({"oneOf": [{"type": "null"}, t]})
}

fn of_type(t: &SqlType) -> Value {
    match t {
        SqlType::Boolean => json!({"type": "boolean"}),
        SqlType::Int => json!({"type": "integer", "connect.type": "int32"}),
        SqlType::Bigint => json!({"type": "integer", "connect.type": "int64"}),
        SqlType::Double => json!({"type": "number", "connect.type": "float64"}),
        SqlType::String => json!({"type": "string"}),
        SqlType::Bytes => json!({"type": "string", "connect.type": "bytes"}),
        SqlType::Decimal { precision, scale } => json!({
            "type": "number",
            "title": "org.apache.kafka.connect.data.Decimal",
            "connect.version": 1,
            "connect.parameters": {"connect.decimal.precision": precision.to_string(), "scale": scale.to_string()}
        }),
        SqlType::Timestamp => json!({
            "type": "integer", "connect.type": "int64",
            "title": "org.apache.kafka.connect.data.Timestamp", "connect.version": 1
        }),
        SqlType::Date => json!({
            "type": "integer", "connect.type": "int32",
            "title": "org.apache.kafka.connect.data.Date", "connect.version": 1
        }),
        SqlType::Time => json!({
            "type": "integer", "connect.type": "int32",
            "title": "org.apache.kafka.connect.data.Time", "connect.version": 1
        }),
        SqlType::Array(e) => json!({"type": "array", "items": optional(of_type(e))}),
        SqlType::Map(_, v) => json!({
            "type": "object", "connect.type": "map", "additionalProperties": optional(of_type(v))
        }),
        SqlType::Struct(fields) => object(fields),
    }
}

/// The fields of an object schema (not a map) in order, or `None` for any other schema.
pub fn object_fields(v: &Value) -> Result<Option<Vec<(String, SqlType)>>, String> {
    let v = non_null(v);
    let Some(properties) = v.get("properties").and_then(Value::as_object) else {
        return Ok(None);
    };
    let mut fields: Vec<(i64, String, SqlType)> = Vec::new();
    for (i, (name, field)) in properties.iter().enumerate() {
        let index = field
            .get("connect.index")
            .and_then(Value::as_i64)
            .unwrap_or(i as i64);
        fields.push((index, name.clone(), sql_type(field)?));
    }
    fields.sort_by_key(|(i, _, _)| *i);
    Ok(Some(fields.into_iter().map(|(_, n, t)| (n, t)).collect()))
}

/// The schema itself, or its non-null branch when it is `oneOf` null and one type.
fn non_null(v: &Value) -> &Value {
    match v.get("oneOf").and_then(Value::as_array) {
        Some(branches) => {
            let real: Vec<&Value> = branches
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            match real.as_slice() {
                [one] => one,
                _ => v,
            }
        }
        None => v,
    }
}

/// The SQL type of a JSON schema.
pub fn sql_type(v: &Value) -> Result<SqlType, String> {
    let v = non_null(v);
    let connect = v.get("connect.type").and_then(Value::as_str);
    let title = v.get("title").and_then(Value::as_str).unwrap_or_default();
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("boolean") => SqlType::Boolean,
        Some("integer") if title.ends_with(".Timestamp") => SqlType::Timestamp,
        Some("integer") if title.ends_with(".Date") => SqlType::Date,
        Some("integer") if title.ends_with(".Time") => SqlType::Time,
        Some("integer") if matches!(connect, Some("int8" | "int16" | "int32")) => SqlType::Int,
        Some("integer") => SqlType::Bigint,
        Some("number") if title.ends_with(".Decimal") => {
            let param = |k: &str| {
                v.pointer(&format!("/connect.parameters/{k}"))
                    .and_then(|p| p.as_str().and_then(|s| s.parse().ok()).or(p.as_u64()))
            };
            SqlType::Decimal {
                precision: param("connect.decimal.precision").unwrap_or(64).min(38) as u8,
                scale: param("scale").unwrap_or(0) as i8,
            }
        }
        Some("number") => SqlType::Double,
        Some("string") if connect == Some("bytes") => SqlType::Bytes,
        Some("string") => SqlType::String,
        Some("array") => SqlType::Array(Box::new(sql_type(
            v.get("items").ok_or("an array schema without items")?,
        )?)),
        Some("object") => match (object_fields(v)?, v.get("additionalProperties")) {
            (Some(fields), _) => SqlType::Struct(fields),
            (None, Some(values)) => {
                SqlType::Map(Box::new(SqlType::String), Box::new(sql_type(values)?))
            }
            (None, None) => return Err(format!("an object schema without properties: {v}")),
        },
        _ => return Err(format!("unsupported JSON schema: {v}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwrapped_int_key_is_an_optional_int32() {
        assert_eq!(
            for_columns(&[("K".into(), SqlType::Int)], false),
            json!({"oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int32"}]})
        );
        let cols = vec![
            ("A".to_string(), SqlType::String),
            ("B".to_string(), SqlType::Array(Box::new(SqlType::Bigint))),
            (
                "C".to_string(),
                SqlType::Decimal {
                    precision: 4,
                    scale: 2,
                },
            ),
        ];
        let v = for_columns(&cols, true);
        assert_eq!(v["properties"]["A"]["connect.index"], 0);
        assert_eq!(
            object_fields(&v).unwrap(),
            Some(cols),
            "inference reads it back"
        );
    }
}
