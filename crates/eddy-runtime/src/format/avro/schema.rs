//! Avro schemas: parsed from their JSON form, derived from columns the way ksqlDB derives them, and
//! turned back into SQL types when a source's columns are inferred from a registered schema.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use eddy_sql::SqlType;

/// An Avro schema, with the logical types Eddy reads and writes resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum AvroSchema {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Record {
        name: String,
        fields: Vec<AvroField>,
    },
    Enum {
        name: String,
        symbols: Vec<String>,
    },
    Array(Box<AvroSchema>),
    Map(Box<AvroSchema>),
    Union(Vec<AvroSchema>),
    Fixed {
        name: String,
        size: usize,
    },
    /// `bytes` (or `fixed` of `size`) with logical type `decimal`.
    Decimal {
        precision: u8,
        scale: i8,
        fixed: Option<usize>,
    },
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
}

/// A field of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct AvroField {
    pub name: String,
    pub schema: AvroSchema,
}

/// ksqlDB's names: the value record, and the key record of a multi-column key.
pub const VALUE_RECORD: &str = "KsqlDataSourceSchema";
const KEY_RECORD: &str = "OutputKey";
const NAMESPACE: &str = "io.confluent.ksql.avro_schemas";

impl AvroSchema {
    /// Parses the JSON form of a schema.
    pub fn parse(text: &str) -> Result<AvroSchema, String> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| format!("Invalid Avro schema: {e}"))?;
        Parser::default().parse(&json)
    }

    /// The schema ksqlDB writes for columns: a record of optional fields, or with `wrap` false the
    /// single column's optional type. Keys are not optional at the top.
    pub fn for_columns(columns: &[(String, SqlType)], wrap: bool, key: bool) -> AvroSchema {
        let record = if key { KEY_RECORD } else { VALUE_RECORD };
        match columns {
            [(_, t)] if !wrap => {
                let s = of_type(t, record);
                if key { s } else { optional(s) }
            }
            _ => record_of(record, columns),
        }
    }

    /// The schema's JSON form.
    pub fn to_json(&self) -> Value {
        let logical = |base: &str, name: &str| json!({"type": base, "logicalType": name});
        match self {
            AvroSchema::Null => json!("null"),
            AvroSchema::Boolean => json!("boolean"),
            AvroSchema::Int => json!("int"),
            AvroSchema::Long => json!("long"),
            AvroSchema::Float => json!("float"),
            AvroSchema::Double => json!("double"),
            AvroSchema::Bytes => json!("bytes"),
            AvroSchema::String => json!("string"),
            AvroSchema::Record { name, fields } => {
                let (namespace, short) = split_name(name);
                let mut m = Map::new();
                m.insert("type".into(), json!("record"));
                m.insert("name".into(), json!(short));
                if let Some(ns) = namespace {
                    m.insert("namespace".into(), json!(ns));
                }
                let fields: Vec<Value> = fields
                    .iter()
                    .map(|f| {
                        let mut field = json!({"name": f.name, "type": f.schema.to_json()});
                        if matches!(&f.schema, AvroSchema::Union(b) if b.first() == Some(&AvroSchema::Null))
                        {
                            field["default"] = Value::Null;
                        }
                        field
                    })
                    .collect();
                m.insert("fields".into(), Value::Array(fields));
                Value::Object(m)
            }
            AvroSchema::Enum { name, symbols } => {
                json!({"type": "enum", "name": name, "symbols": symbols})
            }
            AvroSchema::Array(items) => json!({"type": "array", "items": items.to_json()}),
            AvroSchema::Map(values) => json!({"type": "map", "values": values.to_json()}),
            AvroSchema::Union(branches) => {
                Value::Array(branches.iter().map(AvroSchema::to_json).collect())
            }
            AvroSchema::Fixed { name, size } => {
                json!({"type": "fixed", "name": name, "size": size})
            }
            AvroSchema::Decimal {
                precision,
                scale,
                fixed,
            } => match fixed {
                Some(size) => json!({"type": "fixed", "name": "decimal", "size": size,
                    "logicalType": "decimal", "precision": precision, "scale": scale}),
                None => json!({"type": "bytes", "logicalType": "decimal",
                    "precision": precision, "scale": scale}),
            },
            AvroSchema::Date => logical("int", "date"),
            AvroSchema::TimeMillis => logical("int", "time-millis"),
            AvroSchema::TimeMicros => logical("long", "time-micros"),
            AvroSchema::TimestampMillis => logical("long", "timestamp-millis"),
            AvroSchema::TimestampMicros => logical("long", "timestamp-micros"),
        }
    }

    /// The SQL type of a schema, for columns inferred from it.
    pub fn sql_type(&self) -> Result<SqlType, String> {
        Ok(match self {
            AvroSchema::Boolean => SqlType::Boolean,
            AvroSchema::Int => SqlType::Int,
            AvroSchema::Long => SqlType::Bigint,
            AvroSchema::Float | AvroSchema::Double => SqlType::Double,
            AvroSchema::Bytes | AvroSchema::Fixed { .. } => SqlType::Bytes,
            AvroSchema::String | AvroSchema::Enum { .. } => SqlType::String,
            AvroSchema::Record { fields, .. } => SqlType::Struct(
                fields
                    .iter()
                    .map(|f| Ok((f.name.clone(), f.schema.sql_type()?)))
                    .collect::<Result<_, String>>()?,
            ),
            AvroSchema::Array(items) => SqlType::Array(Box::new(items.sql_type()?)),
            AvroSchema::Map(values) => {
                SqlType::Map(Box::new(SqlType::String), Box::new(values.sql_type()?))
            }
            AvroSchema::Union(branches) => {
                let real: Vec<&AvroSchema> = branches
                    .iter()
                    .filter(|b| **b != AvroSchema::Null)
                    .collect();
                match real.as_slice() {
                    [one] => one.sql_type()?,
                    _ => return Err(format!("Unsupported Avro union: {}", self.to_json())),
                }
            }
            AvroSchema::Decimal {
                precision, scale, ..
            } => SqlType::Decimal {
                precision: *precision,
                scale: *scale,
            },
            AvroSchema::Date => SqlType::Date,
            AvroSchema::TimeMillis | AvroSchema::TimeMicros => SqlType::Time,
            AvroSchema::TimestampMillis | AvroSchema::TimestampMicros => SqlType::Timestamp,
            AvroSchema::Null => return Err("Avro type 'null' has no SQL type".to_string()),
        })
    }

    /// The branch of a union a non-null value takes (the schema itself when it is not a union), with
    /// its index.
    pub fn non_null(&self) -> (Option<usize>, &AvroSchema) {
        match self {
            AvroSchema::Union(branches) => branches
                .iter()
                .enumerate()
                .find(|(_, b)| **b != AvroSchema::Null)
                .map_or((None, self), |(i, b)| (Some(i), b)),
            other => (None, other),
        }
    }
}

fn optional(s: AvroSchema) -> AvroSchema {
    AvroSchema::Union(vec![AvroSchema::Null, s])
}

fn split_name(full: &str) -> (Option<&str>, &str) {
    match full.rsplit_once('.') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, full),
    }
}

/// The Avro schema of a SQL type; `name` names a struct's record.
fn of_type(t: &SqlType, name: &str) -> AvroSchema {
    match t {
        SqlType::Boolean => AvroSchema::Boolean,
        SqlType::Int => AvroSchema::Int,
        SqlType::Bigint => AvroSchema::Long,
        SqlType::Double => AvroSchema::Double,
        SqlType::String => AvroSchema::String,
        SqlType::Bytes => AvroSchema::Bytes,
        SqlType::Decimal { precision, scale } => AvroSchema::Decimal {
            precision: *precision,
            scale: *scale,
            fixed: None,
        },
        SqlType::Date => AvroSchema::Date,
        SqlType::Time => AvroSchema::TimeMillis,
        SqlType::Timestamp => AvroSchema::TimestampMillis,
        SqlType::Array(e) => AvroSchema::Array(Box::new(optional(of_type(e, name)))),
        SqlType::Map(_, v) => AvroSchema::Map(Box::new(optional(of_type(v, name)))),
        SqlType::Struct(fields) => record_of(name, fields),
    }
}

/// A record named `name` (in ksqlDB's namespace) of optional fields; a struct field's record is named
/// after the record and the field, as ksqlDB names it.
fn record_of(name: &str, fields: &[(String, SqlType)]) -> AvroSchema {
    AvroSchema::Record {
        name: format!("{NAMESPACE}.{name}"),
        fields: fields
            .iter()
            .map(|(n, t)| AvroField {
                name: n.clone(),
                schema: optional(of_type(t, &format!("{name}_{n}"))),
            })
            .collect(),
    }
}

/// Parses schemas, remembering named types so later references to them resolve.
#[derive(Default)]
struct Parser {
    named: HashMap<String, AvroSchema>,
}

impl Parser {
    fn parse(&mut self, json: &Value) -> Result<AvroSchema, String> {
        match json {
            Value::String(name) => self.named_or_primitive(name),
            Value::Array(branches) => branches
                .iter()
                .map(|b| self.parse(b))
                .collect::<Result<_, _>>()
                .map(AvroSchema::Union),
            Value::Object(m) => self.complex(m),
            other => Err(format!("Invalid Avro schema: {other}")),
        }
    }

    fn named_or_primitive(&self, name: &str) -> Result<AvroSchema, String> {
        Ok(match name {
            "null" => AvroSchema::Null,
            "boolean" => AvroSchema::Boolean,
            "int" => AvroSchema::Int,
            "long" => AvroSchema::Long,
            "float" => AvroSchema::Float,
            "double" => AvroSchema::Double,
            "bytes" => AvroSchema::Bytes,
            "string" => AvroSchema::String,
            other => self
                .named
                .get(other)
                .or_else(|| {
                    self.named
                        .iter()
                        .find(|(k, _)| split_name(k).1 == other)
                        .map(|(_, v)| v)
                })
                .cloned()
                .ok_or_else(|| format!("Unknown Avro type '{other}'"))?,
        })
    }

    fn complex(&mut self, m: &Map<String, Value>) -> Result<AvroSchema, String> {
        let text = |k: &str| m.get(k).and_then(Value::as_str);
        let number = |k: &str| m.get(k).and_then(Value::as_u64);
        let name = || {
            let name = text("name").unwrap_or_default();
            match text("namespace") {
                Some(ns) if !ns.is_empty() && !name.contains('.') => format!("{ns}.{name}"),
                _ => name.to_string(),
            }
        };
        let kind = match m.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(nested) => return self.parse(nested),
            None => {
                return Err(format!(
                    "Avro schema without a type: {}",
                    Value::Object(m.clone())
                ));
            }
        };
        let logical = text("logicalType");
        let schema = match (kind, logical) {
            ("bytes", Some("decimal")) | ("fixed", Some("decimal")) => AvroSchema::Decimal {
                precision: number("precision").unwrap_or(64).min(38) as u8,
                scale: number("scale").unwrap_or(0) as i8,
                fixed: number("size")
                    .filter(|_| kind == "fixed")
                    .map(|s| s as usize),
            },
            ("int", Some("date")) => AvroSchema::Date,
            ("int", Some("time-millis")) => AvroSchema::TimeMillis,
            ("long", Some("time-micros")) => AvroSchema::TimeMicros,
            ("long", Some("timestamp-millis")) => AvroSchema::TimestampMillis,
            ("long", Some("timestamp-micros")) => AvroSchema::TimestampMicros,
            ("record" | "error", _) => {
                let full = name();
                let mut fields = Vec::new();
                for f in m
                    .get("fields")
                    .and_then(Value::as_array)
                    .ok_or("An Avro record needs fields")?
                {
                    let fname = f
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or("An Avro record field needs a name")?;
                    let ftype = f.get("type").ok_or("An Avro record field needs a type")?;
                    fields.push(AvroField {
                        name: fname.to_string(),
                        schema: self.parse(ftype)?,
                    });
                }
                AvroSchema::Record { name: full, fields }
            }
            ("enum", _) => AvroSchema::Enum {
                name: name(),
                symbols: m
                    .get("symbols")
                    .and_then(Value::as_array)
                    .ok_or("An Avro enum needs symbols")?
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
            },
            ("array", _) => {
                AvroSchema::Array(Box::new(self.parse(m.get("items").ok_or("items")?)?))
            }
            ("map", _) => AvroSchema::Map(Box::new(self.parse(m.get("values").ok_or("values")?)?)),
            ("fixed", _) => AvroSchema::Fixed {
                name: name(),
                size: number("size").ok_or("An Avro fixed needs a size")? as usize,
            },
            (primitive, _) => self.named_or_primitive(primitive)?,
        };
        if matches!(kind, "record" | "error" | "enum" | "fixed") {
            self.named.insert(name(), schema.clone());
        }
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_value_schema_is_a_record_of_optional_fields() {
        let cols = vec![
            ("ID".to_string(), SqlType::Bigint),
            (
                "S".to_string(),
                SqlType::Struct(vec![("F1".to_string(), SqlType::Int)]),
            ),
        ];
        let s = AvroSchema::for_columns(&cols, true, false);
        let json = s.to_json();
        assert_eq!(json["name"], "KsqlDataSourceSchema");
        assert_eq!(json["namespace"], "io.confluent.ksql.avro_schemas");
        assert_eq!(json["fields"][0]["type"], json!(["null", "long"]));
        assert_eq!(
            json["fields"][1]["type"][1]["name"],
            "KsqlDataSourceSchema_S"
        );
        assert_eq!(
            AvroSchema::parse(&json.to_string()).unwrap(),
            s,
            "round trip"
        );
        assert_eq!(
            s.sql_type().unwrap(),
            SqlType::Struct(cols),
            "inference gives back the columns"
        );
    }

    #[test]
    fn logical_types_and_named_references_parse() {
        let s = AvroSchema::parse(
            r#"{"type":"record","name":"R","fields":[
                {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}},
                {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
                {"name":"e2","type":"E"}]}"#,
        )
        .unwrap();
        let AvroSchema::Record { fields, .. } = s else {
            panic!("not a record")
        };
        assert_eq!(
            fields[0].schema,
            AvroSchema::Decimal {
                precision: 4,
                scale: 2,
                fixed: None
            }
        );
        assert_eq!(fields[1].schema, fields[2].schema);
        assert!(AvroSchema::parse(r#""nope""#).is_err());
    }
}
