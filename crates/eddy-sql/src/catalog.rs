//! The catalog: the streams and tables Eddy knows, with their columns, formats and topics.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use eddy_common::{Result, plan_err};

use crate::statement::{
    ColumnDef, ColumnRole, CreateSource, Properties, PropertyValue, SourceKind,
};
use crate::types::SqlType;
use crate::window::KeyWindow;

/// Pseudo-column holding the record's timestamp (epoch ms).
pub const ROWTIME: &str = "ROWTIME";
/// Pseudo-column holding the record's source partition.
pub const ROWPARTITION: &str = "ROWPARTITION";
/// Pseudo-column holding the record's source offset.
pub const ROWOFFSET: &str = "ROWOFFSET";
/// Pseudo-column holding the start of a windowed key's window (epoch ms).
pub const WINDOWSTART: &str = "WINDOWSTART";
/// Pseudo-column holding the end of a windowed key's window (epoch ms).
pub const WINDOWEND: &str = "WINDOWEND";
/// Number of pseudo-columns that lead every source's input schema.
pub const PSEUDO_COLUMNS: usize = 3;

/// A serialization format of keys or values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    Json,
    Delimited,
    Kafka,
    None,
    /// Avro with Confluent Schema Registry framing.
    Avro,
    /// JSON with Confluent Schema Registry framing (`JSON_SR`).
    JsonSr,
    /// Protocol Buffers with Confluent Schema Registry framing.
    Protobuf,
    /// Protocol Buffers without a schema registry: the schema comes from the columns.
    ProtobufNoSr,
}

impl FormatKind {
    pub fn parse(name: &str) -> Result<FormatKind> {
        Ok(match name.to_ascii_uppercase().as_str() {
            "JSON" => FormatKind::Json,
            "DELIMITED" => FormatKind::Delimited,
            "KAFKA" => FormatKind::Kafka,
            "NONE" => FormatKind::None,
            "AVRO" => FormatKind::Avro,
            "JSON_SR" => FormatKind::JsonSr,
            "PROTOBUF" => FormatKind::Protobuf,
            "PROTOBUF_NOSR" => FormatKind::ProtobufNoSr,
            other => {
                return Err(plan_err!(
                    "Unknown format: {other} (the formats are JSON, JSON_SR, AVRO, PROTOBUF, PROTOBUF_NOSR, DELIMITED, KAFKA and NONE)"
                ));
            }
        })
    }

    /// The format's SQL name.
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Json => "JSON",
            FormatKind::Delimited => "DELIMITED",
            FormatKind::Kafka => "KAFKA",
            FormatKind::None => "NONE",
            FormatKind::Avro => "AVRO",
            FormatKind::JsonSr => "JSON_SR",
            FormatKind::Protobuf => "PROTOBUF",
            FormatKind::ProtobufNoSr => "PROTOBUF_NOSR",
        }
    }

    /// Whether payloads carry a schema registry's framing (a magic byte and a schema id).
    pub fn uses_registry(self) -> bool {
        matches!(
            self,
            FormatKind::Avro | FormatKind::JsonSr | FormatKind::Protobuf
        )
    }
}

/// A format with its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub kind: FormatKind,
    /// Field separator of DELIMITED.
    pub delimiter: char,
    /// Whether a single value column is wrapped in an object (JSON) — ksqlDB's `WRAP_SINGLE_VALUE`.
    pub wrap_single_value: bool,
}

impl Format {
    /// A format with default options.
    pub fn new(kind: FormatKind) -> Self {
        Format {
            kind,
            delimiter: ',',
            wrap_single_value: true,
        }
    }

    /// A key format: a single key column is never wrapped in an object or record.
    pub fn key(kind: FormatKind) -> Self {
        Format {
            wrap_single_value: false,
            ..Format::new(kind)
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())
    }
}

/// A column of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub sql_type: SqlType,
    pub role: ColumnRole,
    /// The header a `HEADER('key')` column reads.
    pub header_key: Option<String>,
}

impl Column {
    /// A key or value column.
    pub fn new(name: impl Into<String>, sql_type: SqlType, role: ColumnRole) -> Self {
        Column {
            name: name.into(),
            sql_type,
            role,
            header_key: None,
        }
    }
}

impl From<&ColumnDef> for Column {
    fn from(c: &ColumnDef) -> Self {
        Column {
            name: c.name.clone(),
            sql_type: c.sql_type.clone(),
            role: c.role,
            header_key: c.header_key.clone(),
        }
    }
}

/// A stream or table over a Kafka topic.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub topic: String,
    pub key_format: Format,
    pub value_format: Format,
    /// Key columns first, then value columns.
    pub columns: Vec<Column>,
    /// The column that gives event time (`TIMESTAMP='col'`), if not the record's timestamp.
    pub timestamp_column: Option<String>,
    pub timestamp_format: Option<String>,
    pub partitions: i32,
    pub replicas: i16,
    /// The statement that created the source.
    pub statement: String,
    /// True for `CREATE SOURCE STREAM|TABLE` (read-only).
    pub is_read_only: bool,
    /// How the source's keys are windowed (`WINDOW_TYPE`, `WINDOW_SIZE`; a windowed aggregation's sink).
    pub window: Option<KeyWindow>,
    /// The names of the key's and the value's schemas (`KEY_SCHEMA_FULL_NAME`,
    /// `VALUE_SCHEMA_FULL_NAME`): which message of a PROTOBUF schema the records are.
    pub schema_names: [Option<String>; 2],
}

impl Source {
    /// Key columns, in declaration order.
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.role == ColumnRole::Key)
    }

    /// Value columns, in declaration order.
    pub fn value_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.role == ColumnRole::Value)
    }

    /// Columns read from the record's headers (`HEADERS`, `HEADER('key')`), in declaration order.
    pub fn header_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.role.is_header())
    }

    /// Value columns, then header columns: what `SELECT *` shows after the keys.
    pub fn non_key_columns(&self) -> impl Iterator<Item = &Column> {
        self.value_columns().chain(self.header_columns())
    }

    /// Looks a column up by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The schema of batches decoded from this source: pseudo-columns, then key columns, then value
    /// columns, then header columns, then (for windowed keys) the window bounds WINDOWSTART and
    /// WINDOWEND.
    pub fn input_schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new(ROWTIME, DataType::Int64, false),
            Field::new(ROWPARTITION, DataType::Int32, false),
            Field::new(ROWOFFSET, DataType::Int64, false),
        ];
        fields.extend(
            self.key_columns()
                .chain(self.non_key_columns())
                .map(|c| Field::new(&c.name, c.sql_type.to_arrow(), true)),
        );
        if self.window.is_some() {
            fields.extend(window_bound_fields());
        }
        Arc::new(Schema::new(fields))
    }

    /// Refuses a key column whose type contains a map (ksqlDB's rule: maps serialize inconsistently).
    pub fn check_key_type(name: &str, sql_type: &SqlType) -> Result<()> {
        if contains_map(sql_type) {
            return Err(plan_err!(
                "Map keys, including types that contain maps, are not supported as they may lead to unexpected behavior due to inconsistent serialization. Key column name: `{name}`. Column type: {sql_type}. See https://github.com/confluentinc/ksql/issues/6621 for more."
            ));
        }
        Ok(())
    }

    /// The key and value formats a `CREATE` statement's properties give (checked before its columns).
    pub fn formats(create: &CreateSource, defaults: &SourceDefaults) -> Result<(Format, Format)> {
        let props = &create.properties;
        check_known_properties(props)?;
        let format = props.get("FORMAT").map(|v| v.text());
        if format.is_some()
            && (props.contains_key("KEY_FORMAT") || props.contains_key("VALUE_FORMAT"))
        {
            return Err(plan_err!(
                "Cannot supply both 'FORMAT' and 'KEY_FORMAT' or 'VALUE_FORMAT' properties, as 'FORMAT' sets both key and value formats.\nEither use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
            ));
        }
        let value_name = props
            .get("VALUE_FORMAT")
            .map(|v| v.text())
            .or(format.clone())
            .or(defaults.value_format.map(|f| f.name().to_string()));
        let Some(value_name) = value_name else {
            return Err(plan_err!(
                "Statement is missing the 'VALUE_FORMAT' property from the WITH clause.\nEither provide one or set a default via the 'ksql.persistence.default.format.value' config."
            ));
        };
        let mut value_format = Format::new(FormatKind::parse(&value_name)?);
        let key_name = props
            .get("KEY_FORMAT")
            .map(|v| v.text())
            .or(format)
            .or(defaults.key_format.map(|f| f.name().to_string()));
        let mut key_format = Format::key(
            key_name
                .map(|n| FormatKind::parse(&n))
                .transpose()?
                .unwrap_or(FormatKind::Kafka),
        );
        for (name, format) in [
            ("VALUE_AVRO_SCHEMA_FULL_NAME", value_format),
            ("VALUE_SCHEMA_FULL_NAME", value_format),
            ("KEY_SCHEMA_FULL_NAME", key_format),
        ] {
            let Some(full) = props.get(name) else {
                continue;
            };
            if !matches!(
                format.kind,
                FormatKind::Avro | FormatKind::Protobuf | FormatKind::ProtobufNoSr
            ) {
                return Err(plan_err!(
                    "{} does not support the following configs: [fullSchemaName]",
                    format.kind.name()
                ));
            }
            if full.text().trim().is_empty() {
                return Err(plan_err!(
                    "fullSchemaName cannot be empty. Format configuration: {{fullSchemaName=}}"
                ));
            }
        }
        if let Some(d) = props.get("VALUE_DELIMITER") {
            value_format.delimiter = parse_delimiter("VALUE_DELIMITER", &d.text())?;
            if value_format.kind != FormatKind::Delimited {
                return Err(plan_err!(
                    "{} does not support the following configs: [delimiter]",
                    value_format.kind.name()
                ));
            }
        }
        if let Some(d) = props.get("KEY_DELIMITER") {
            key_format.delimiter = parse_delimiter("KEY_DELIMITER", &d.text())?;
        }
        if let Some(w) = props.get("WRAP_SINGLE_VALUE") {
            let wraps = !matches!(value_format.kind, FormatKind::Delimited | FormatKind::Kafka);
            if !wraps && parse_bool("WRAP_SINGLE_VALUE", w)? {
                return Err(plan_err!(
                    "Format '{}' does not support 'WRAP_SINGLE_VALUE' set to 'true'.",
                    value_format.kind.name()
                ));
            }
            value_format.wrap_single_value = parse_bool("WRAP_SINGLE_VALUE", w)?;
        } else if let Some(w) = defaults.wrap_single_values {
            value_format.wrap_single_value = w;
        }
        Ok((key_format, value_format))
    }

    /// Builds a source from `CREATE STREAM|TABLE (...) WITH (...)`, checking its properties.
    pub fn from_create(
        create: &CreateSource,
        columns: Vec<Column>,
        defaults: &SourceDefaults,
        statement: &str,
    ) -> Result<Source> {
        let props = &create.properties;
        let (mut key_format, value_format) = Source::formats(create, defaults)?;
        let kind_name = create.kind.as_str();
        let topic = match (props.get("KAFKA_TOPIC"), &defaults.topic) {
            (Some(v), _) => v.text(),
            (None, Some(t)) => t.clone(),
            (None, None) => {
                return Err(plan_err!(
                    "Missing required property \"KAFKA_TOPIC\" which has no default value."
                ));
            }
        };
        let keys: Vec<&Column> = columns
            .iter()
            .filter(|c| c.role == ColumnRole::Key)
            .collect();
        let values: Vec<&Column> = columns
            .iter()
            .filter(|c| c.role == ColumnRole::Value)
            .collect();
        if key_format.kind == FormatKind::None && !keys.is_empty() {
            // ksqlDB switches the key format to KAFKA implicitly only when none was given.
            if props.contains_key("KEY_FORMAT") || props.contains_key("FORMAT") {
                return Err(plan_err!(
                    "The 'NONE' format can only be used when no columns are defined. Got: [{}]",
                    schema_text(keys.iter().copied())
                ));
            }
            key_format.kind = FormatKind::Kafka;
        }
        if keys.is_empty() && !props.contains_key("KEY_FORMAT") && !props.contains_key("FORMAT") {
            key_format.kind = FormatKind::None;
        }
        for k in &keys {
            check_key_type(&k.name, &k.sql_type)?;
        }
        if create.query.is_some()
            && keys.is_empty()
            && props
                .get("KEY_FORMAT")
                .is_some_and(|f| !f.text().eq_ignore_ascii_case("NONE"))
        {
            return Err(plan_err!(
                "Key format specified for {} without key columns.",
                kind_name.to_lowercase()
            ));
        }
        check_format_columns(key_format, &keys).map_err(|reason| {
            plan_err!(
                "Key format does not support schema.\nformat: {}\nschema: Persistence{{columns=[{}], features=[]}}\nreason: {reason}",
                key_format.kind.name(),
                schema_text(keys.iter().copied())
            )
        })?;
        if value_format.kind == FormatKind::Delimited
            && let Some(q) = &create.query
        {
            check_delimited_intermediates(&q.query)?;
        }
        check_format_columns(value_format, &values).map_err(|reason| plan_err!("{reason}"))?;
        if props.contains_key("WRAP_SINGLE_VALUE")
            && values.len() > 1
            && !value_format.wrap_single_value
        {
            return Err(plan_err!(
                "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas"
            ));
        }
        let timestamp_column = timestamp_column(props, &columns)?;
        let window = match (props.get("WINDOW_TYPE"), props.get("WINDOW_SIZE")) {
            (Some(t), size) => Some(KeyWindow::from_properties(
                &t.text(),
                size.map(|s| s.text()).as_deref(),
            )?),
            (None, Some(_)) => {
                return Err(plan_err!(
                    "'WINDOW_SIZE' can only be set together with 'WINDOW_TYPE'"
                ));
            }
            (None, None) => None,
        };
        let partitions = positive::<i32>(props, "PARTITIONS")?
            .or(defaults.partitions)
            .unwrap_or(0);
        let replicas = positive::<i16>(props, "REPLICAS")?.unwrap_or(1);
        let mut ordered: Vec<Column> = columns
            .iter()
            .filter(|c| c.role == ColumnRole::Key)
            .cloned()
            .collect();
        ordered.extend(
            columns
                .iter()
                .filter(|c| c.role == ColumnRole::Value)
                .cloned(),
        );
        ordered.extend(columns.iter().filter(|c| c.role.is_header()).cloned());
        if ordered
            .iter()
            .filter(|c| c.role == ColumnRole::Headers)
            .count()
            > 1
        {
            return Err(plan_err!(
                "Schema already contains a HEADERS column: a source has at most one"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &ordered {
            if !seen.insert(c.name.as_str()) {
                return Err(plan_err!("Duplicate column names: {}", c.name));
            }
            // A query's names were checked when it was planned (a PARTITION BY ROWTIME key is fine).
            if create.query.is_none()
                && [ROWTIME, ROWPARTITION, ROWOFFSET, WINDOWSTART, WINDOWEND]
                    .contains(&c.name.as_str())
            {
                return Err(plan_err!(
                    "'{}' is a reserved column name. You cannot use it as a name for a column.",
                    c.name
                ));
            }
        }
        Ok(Source {
            name: create.name.clone(),
            kind: create.kind,
            topic,
            key_format,
            value_format,
            columns: ordered,
            timestamp_column,
            timestamp_format: props.get("TIMESTAMP_FORMAT").map(|v| v.text()),
            partitions,
            replicas,
            statement: statement.to_string(),
            is_read_only: create.is_source,
            window,
            schema_names: ["KEY_SCHEMA_FULL_NAME", "VALUE_SCHEMA_FULL_NAME"]
                .map(|name| props.get(name).map(|v| v.text())),
        })
    }
}

/// Defaults a `CREATE` statement falls back on (from the session, or the source of a `CREATE ... AS SELECT`).
#[derive(Debug, Clone, Default)]
pub struct SourceDefaults {
    pub topic: Option<String>,
    pub key_format: Option<FormatKind>,
    pub value_format: Option<FormatKind>,
    pub wrap_single_values: Option<bool>,
    pub partitions: Option<i32>,
}

const KNOWN_PROPERTIES: &[&str] = &[
    "KAFKA_TOPIC",
    "VALUE_FORMAT",
    "KEY_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "VALUE_DELIMITER",
    "KEY_DELIMITER",
    "WRAP_SINGLE_VALUE",
    "RETENTION_MS",
    "WINDOW_TYPE",
    "WINDOW_SIZE",
    "KEY_SCHEMA_ID",
    "VALUE_SCHEMA_ID",
    "KEY_SCHEMA_FULL_NAME",
    "VALUE_SCHEMA_FULL_NAME",
    "VALUE_AVRO_SCHEMA_FULL_NAME",
];

fn check_known_properties(props: &Properties) -> Result<()> {
    for k in props.keys() {
        if !KNOWN_PROPERTIES.contains(&k.as_str()) {
            return Err(plan_err!(
                "Invalid config variable(s) in the WITH clause: {k}"
            ));
        }
    }
    Ok(())
}

/// A positive whole-number property (`PARTITIONS`, `REPLICAS`), if given.
fn positive<T: std::str::FromStr + PartialOrd + Default>(
    props: &Properties,
    name: &str,
) -> Result<Option<T>> {
    props
        .get(name)
        .map(|v| {
            v.text()
                .parse::<T>()
                .ok()
                .filter(|n| *n > T::default())
                .ok_or_else(|| plan_err!("Invalid value for {name}: {v}"))
        })
        .transpose()
}

fn parse_bool(name: &str, v: &PropertyValue) -> Result<bool> {
    match v {
        PropertyValue::Bool(b) => Ok(*b),
        other => match other.text().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(plan_err!(
                "Property {name} must be true or false, got {other}"
            )),
        },
    }
}

fn parse_delimiter(name: &str, d: &str) -> Result<char> {
    let invalid = |why: String| {
        plan_err!(
            "Failed to prepare statement: Configuration {name} is invalid: {why}\nExample valid value: ';'"
        )
    };
    match d {
        "TAB" => Ok('\t'),
        "SPACE" => Ok(' '),
        s if s.trim().is_empty() => Err(invalid(
            "Delimiter cannot be empty, if you meant to have a tab or space for delimiter, please use the special values 'TAB' or 'SPACE'".into(),
        )),
        s if s.chars().count() == 1 => Ok(s.chars().next().unwrap_or(',')),
        s => Err(invalid(format!("Invalid delimiter value: '{s}'. Delimiter must be a single character or TAB,SPACE"))),
    }
}

/// Columns as ksqlDB writes a schema: `` `ID` INTEGER KEY, `NAME` STRING ``.
pub fn schema_text<'a>(cols: impl IntoIterator<Item = &'a Column>) -> String {
    cols.into_iter()
        .map(|c| {
            let role = match (c.role, &c.header_key) {
                (ColumnRole::Key, _) => " KEY".to_string(),
                (ColumnRole::Headers, _) => " HEADERS".to_string(),
                (ColumnRole::Header, Some(key)) => format!(" HEADER('{key}')"),
                _ => String::new(),
            };
            format!("`{}` {}{role}", c.name, c.sql_type)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn contains_map(t: &SqlType) -> bool {
    match t {
        SqlType::Map(_, _) => true,
        SqlType::Array(e) => contains_map(e),
        SqlType::Struct(fields) => fields.iter().any(|(_, f)| contains_map(f)),
        _ => false,
    }
}

/// The sink or source column `WITH (TIMESTAMP=...)` names, checked: it must exist and be a BIGINT, a
/// TIMESTAMP, or a STRING with a `TIMESTAMP_FORMAT`.
pub fn timestamp_column(props: &Properties, columns: &[Column]) -> Result<Option<String>> {
    Ok(match props.get("TIMESTAMP") {
        Some(v) => {
            let name = crate::normalize::ident_name(&v.text(), None);
            let col = columns.iter().find(|c| c.name == name).ok_or_else(|| {
                plan_err!("The TIMESTAMP column set in the WITH clause does not exist in the schema: '{name}'")
            })?;
            match col.sql_type {
                SqlType::Bigint | SqlType::Timestamp => {}
                SqlType::String if props.contains_key("TIMESTAMP_FORMAT") => {}
                SqlType::String => {
                    return Err(plan_err!(
                        "A String timestamp field has been specified without also specifying the TIMESTAMP_FORMAT property."
                    ));
                }
                ref t => {
                    return Err(plan_err!(
                        "Timestamp column, `{name}`, should be LONG(INT64), TIMESTAMP, or a String with a timestamp_format specified. Got {t}"
                    ));
                }
            }
            Some(name)
        }
        None => None,
    })
}

/// Whether a column (name and type, nested fields included) can be written in Avro: names are
/// letters, digits and underscores not starting with a digit, and maps are keyed by strings.
fn avro_compatible(name: &str, t: &SqlType) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    if !chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    {
        return Err(format!(
            "Schema is not compatible with Avro: Illegal initial character: {name}"
        ));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "Schema is not compatible with Avro: Illegal character in: {name}"
        ));
    }
    match t {
        SqlType::Map(k, _) if **k != SqlType::String => Err(format!(
            "Avro only supports MAPs with STRING keys, but column `{name}` is {t}: use a MAP<STRING, ...>, or another format"
        )),
        SqlType::Map(_, v) | SqlType::Array(v) => avro_compatible(name, v),
        SqlType::Struct(fields) => fields.iter().try_for_each(|(f, ft)| avro_compatible(f, ft)),
        _ => Ok(()),
    }
}

/// ksqlDB keeps the state of some aggregates in the sink's value format, and DELIMITED cannot hold
/// their lists and structs: a query into DELIMITED that calls one is refused.
fn check_delimited_intermediates(query: &sqlparser::ast::Query) -> Result<()> {
    use sqlparser::ast::{Expr, Visit, Visitor};
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> std::ops::ControlFlow<()> {
            const COMPLEX_STATE: [&str; 9] = [
                "ATTR",
                "TOPK",
                "TOPKDISTINCT",
                "STDDEV_SAMP",
                "STDDEV_SAMPLE",
                "CORRELATION",
                "COLLECT_LIST",
                "COLLECT_SET",
                "HISTOGRAM",
            ];
            match e {
                Expr::Function(f)
                    if COMPLEX_STATE
                        .iter()
                        .any(|n| f.name.to_string().eq_ignore_ascii_case(n)) =>
                {
                    std::ops::ControlFlow::Break(())
                }
                _ => std::ops::ControlFlow::Continue(()),
            }
        }
    }
    if query.visit(&mut Finder).is_break() {
        return Err(plan_err!(
            "One of the functions used in the statement has an intermediate type that the value format can not handle. Please remove the function or change the format."
        ));
    }
    Ok(())
}

/// Checks that a format can carry the columns given to it; the error is the reason why not.
fn check_format_columns(format: Format, cols: &[&Column]) -> std::result::Result<(), String> {
    match format.kind {
        FormatKind::Kafka if cols.len() > 1 => Err(format!(
            "The 'KAFKA' format only supports a single field. Got: [{}]",
            schema_text(cols.iter().copied())
        )),
        FormatKind::Kafka => match cols.first().map(|c| &c.sql_type) {
            None
            | Some(
                SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::String | SqlType::Bytes,
            ) => Ok(()),
            Some(t) => Err(format!(
                "The 'KAFKA' format does not support type '{}'",
                t.kind_name()
            )),
        },
        FormatKind::Avro => cols
            .iter()
            .try_for_each(|c| avro_compatible(&c.name, &c.sql_type)),
        FormatKind::None if !cols.is_empty() => Err(format!(
            "The 'NONE' format can only be used when no columns are defined. Got: [{}]",
            schema_text(cols.iter().copied())
        )),
        FormatKind::Delimited => {
            for c in cols {
                if matches!(
                    c.sql_type,
                    SqlType::Array(_) | SqlType::Map(_, _) | SqlType::Struct(_)
                ) {
                    return Err(format!(
                        "The 'DELIMITED' format does not support type '{}', column: `{}`",
                        c.sql_type.kind_name(),
                        c.name
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The sources Eddy knows, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    sources: BTreeMap<String, Arc<Source>>,
}

impl Catalog {
    /// Looks a source up by its (normalized) name.
    pub fn get(&self, name: &str) -> Option<&Arc<Source>> {
        self.sources.get(name)
    }

    /// Looks a source up, or fails with ksqlDB's message.
    pub fn require(&self, name: &str) -> Result<&Arc<Source>> {
        self.get(name)
            .ok_or_else(|| plan_err!("{name} does not exist."))
    }

    /// Adds or replaces a source.
    pub fn insert(&mut self, source: Source) {
        self.sources.insert(source.name.clone(), Arc::new(source));
    }

    /// Removes a source.
    pub fn remove(&mut self, name: &str) -> Option<Arc<Source>> {
        self.sources.remove(name)
    }

    /// All sources, sorted by name.
    pub fn sources(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.sources.values()
    }
}

/// The window bound pseudo-columns, WINDOWSTART and WINDOWEND.
pub fn window_bound_fields() -> [Field; 2] {
    [
        Field::new(WINDOWSTART, DataType::Int64, false),
        Field::new(WINDOWEND, DataType::Int64, false),
    ]
}

/// Refuses a key column whose type contains a map (ksqlDB's rule: maps serialize inconsistently).
pub fn check_key_type(name: &str, sql_type: &SqlType) -> Result<()> {
    if contains_map(sql_type) {
        return Err(plan_err!(
            "Map keys, including types that contain maps, are not supported as they may lead to unexpected behavior due to inconsistent serialization. Key column name: `{name}`. Column type: {sql_type}. See https://github.com/confluentinc/ksql/issues/6621 for more."
        ));
    }
    Ok(())
}
