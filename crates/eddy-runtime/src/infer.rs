//! Columns of a `CREATE STREAM|TABLE` that lists none (or only its key), inferred from the schemas
//! registered for its topic, as ksqlDB infers them.

use eddy_common::{Result, plan_err};
use eddy_sql::SqlType;
use eddy_sql::catalog::{Column, Format};
use eddy_sql::statement::{ColumnRole, CreateSource};

use crate::format::avro::schema::AvroSchema;
use crate::format::json_schema;
use crate::format::protobuf::schema::ProtoSchema;
use crate::registry::{RegisteredSchema, SchemaKind, SchemaRegistry, subject};

/// Columns read from a registered schema.
#[derive(Debug)]
pub struct Inferred {
    pub columns: Vec<Column>,
    /// The schema is not a record: its one column is the whole payload (ksqlDB's `ROWVAL`/`ROWKEY`).
    pub unwrapped: bool,
}

/// The columns of one part (key or value) of a source over `topic` in `format`, from the schema
/// with the id the statement gives (`KEY_SCHEMA_ID`/`VALUE_SCHEMA_ID`) or the subject's latest.
/// `None` when the format has no registry or the subject has no schema.
pub fn infer_part(
    registry: &dyn SchemaRegistry,
    create: &CreateSource,
    topic: &str,
    format: Format,
    role: ColumnRole,
) -> Result<Option<Inferred>> {
    if !format.kind.uses_registry() {
        return Ok(None);
    }
    let key = role == ColumnRole::Key;
    let id_property = if key {
        "KEY_SCHEMA_ID"
    } else {
        "VALUE_SCHEMA_ID"
    };
    let schema = match create.properties.get(id_property) {
        Some(id) => {
            let id: u32 = id
                .text()
                .parse()
                .map_err(|_| plan_err!("Invalid value for {id_property}: {id}"))?;
            registry.by_id(id)?
        }
        None => match registry.latest(&subject(topic, key))? {
            Some((_, schema)) => schema,
            None => return Ok(None),
        },
    };
    let full_name = create
        .properties
        .get(if key {
            "KEY_SCHEMA_FULL_NAME"
        } else {
            "VALUE_SCHEMA_FULL_NAME"
        })
        .map(|n| n.text());
    let whole = key || !format.wrap_single_value;
    let (unwrapped, fields) = fields_of(&schema, full_name.as_deref(), whole).map_err(|e| {
        plan_err!(
            "Unable to infer the {} columns of '{}' from its registered schema: {e}",
            if key { "key" } else { "value" },
            create.name
        )
    })?;
    let single = if key { "ROWKEY" } else { "ROWVAL" };
    let columns = fields
        .into_iter()
        .map(|(name, sql_type)| {
            Column::new(
                name.map_or_else(|| single.to_string(), |n| n.to_uppercase()),
                upper_fields(sql_type),
                role,
            )
        })
        .collect();
    Ok(Some(Inferred { columns, unwrapped }))
}

type Fields = Vec<(Option<String>, SqlType)>;

/// ksqlDB names inferred columns and struct fields in upper case.
fn upper_fields(t: SqlType) -> SqlType {
    match t {
        SqlType::Struct(fields) => SqlType::Struct(
            fields
                .into_iter()
                .map(|(n, t)| (n.to_uppercase(), upper_fields(t)))
                .collect(),
        ),
        SqlType::Array(e) => SqlType::Array(Box::new(upper_fields(*e))),
        SqlType::Map(k, v) => SqlType::Map(k, Box::new(upper_fields(*v))),
        other => other,
    }
}

/// The fields of a record schema, or the one unnamed field of any other — or of a record too when
/// `whole` (a key, or a value with `WRAP_SINGLE_VALUE=false`, is one column holding the whole
/// payload); for PROTOBUF, whose payloads are always messages, the fields of the message named
/// `full_name` or else the first.
fn fields_of(
    schema: &RegisteredSchema,
    full_name: Option<&str>,
    whole: bool,
) -> std::result::Result<(bool, Fields), String> {
    match schema.kind {
        SchemaKind::Avro => match AvroSchema::parse(&schema.text)? {
            AvroSchema::Record { fields, .. } if !whole => Ok((
                false,
                fields
                    .iter()
                    .map(|f| Ok((Some(f.name.clone()), f.schema.sql_type()?)))
                    .collect::<std::result::Result<_, String>>()?,
            )),
            other => Ok((true, vec![(None, other.sql_type()?)])),
        },
        SchemaKind::Json => {
            let value: serde_json::Value =
                serde_json::from_str(&schema.text).map_err(|e| e.to_string())?;
            match json_schema::object_fields(&value)?.filter(|_| !whole) {
                Some(fields) => Ok((
                    false,
                    fields.into_iter().map(|(n, t)| (Some(n), t)).collect(),
                )),
                None => Ok((true, vec![(None, json_schema::sql_type(&value)?)])),
            }
        }
        SchemaKind::Protobuf => {
            let proto = ProtoSchema::parse(&schema.text)?;
            let message = match full_name {
                Some(name) => proto
                    .message_named(name)
                    .ok_or_else(|| format!("the schema has no message named {name}"))?,
                None => *proto.top.first().ok_or("the schema has no message")?,
            };
            Ok((
                false,
                proto
                    .columns_of(message)?
                    .into_iter()
                    .map(|(n, t)| (Some(n), t))
                    .collect(),
            ))
        }
    }
}
