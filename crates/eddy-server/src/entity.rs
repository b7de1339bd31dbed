//! The `/ksql` response entities, shaped as ksqlDB serializes them.

use serde_json::{Value, json};

use eddy_runtime::{Engine, Outcome, TopicInfo};
use eddy_sql::SqlType;
use eddy_sql::catalog::{Column, Source};
use eddy_sql::statement::{ColumnRole, SourceKind};

use crate::command_status::command_status;
use crate::query_view::QueryView;

/// `currentStatus` for an executed DDL/DML statement.
pub fn current_status(text: &str, outcome: &Outcome, seq: i64) -> Value {
    let (command_id, status) = command_status(outcome);
    json!({
        "@type": "currentStatus",
        "statementText": text,
        "commandId": command_id,
        "commandStatus": status,
        "commandSequenceNumber": seq,
        "warnings": []
    })
}

fn source_summary(s: &Source) -> Value {
    json!({
        "type": s.kind.as_str(),
        "name": s.name,
        "topic": s.topic,
        "keyFormat": s.key_format.kind.name(),
        "valueFormat": s.value_format.kind.name(),
        "isWindowed": false
    })
}

/// `SHOW STREAMS` / `SHOW TABLES`.
pub fn source_list(text: &str, engine: &Engine, kind: SourceKind) -> Value {
    let items: Vec<Value> = engine
        .catalog()
        .sources()
        .filter(|s| s.kind == kind)
        .map(|s| source_summary(s))
        .collect();
    let (ty, field) = match kind {
        SourceKind::Stream => ("streams", "streams"),
        SourceKind::Table => ("tables", "tables"),
    };
    json!({"@type": ty, "statementText": text, field: items, "warnings": []})
}

/// ksqlDB's `SchemaInfo` of a type.
pub fn schema_info(t: &SqlType) -> Value {
    let mut v = json!({"type": t.kind_name(), "fields": null, "memberSchema": null});
    match t {
        SqlType::Array(e) => v["memberSchema"] = schema_info(e),
        SqlType::Map(_, val) => v["memberSchema"] = schema_info(val),
        SqlType::Struct(fields) => {
            v["fields"] = Value::Array(
                fields
                    .iter()
                    .map(|(n, ft)| json!({"name": n, "schema": schema_info(ft)}))
                    .collect(),
            );
        }
        SqlType::Decimal { precision, scale } => {
            v["parameters"] = json!({"precision": precision, "scale": scale})
        }
        _ => {}
    }
    v
}

fn running_query(q: &QueryView) -> Value {
    json!({
        "queryString": q.statement,
        "sinks": [q.sink],
        "sinkKafkaTopics": [q.sink_topic],
        "id": q.id,
        "statusCount": {q.state.clone(): 1},
        "queryType": "PERSISTENT",
        "state": q.state,
    })
}

/// ksqlDB's `FieldInfo` of columns (`type` only for keys).
pub fn fields(columns: &[Column]) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            let mut f = json!({"name": c.name, "schema": schema_info(&c.sql_type)});
            match c.role {
                ColumnRole::Key => f["type"] = json!("KEY"),
                ColumnRole::Headers | ColumnRole::Header => {
                    f["type"] = json!("HEADER");
                    if let Some(key) = &c.header_key {
                        f["headerKey"] = json!(key);
                    }
                }
                ColumnRole::Value => {}
            }
            f
        })
        .collect()
}

/// `sourceDescription` of `DESCRIBE [EXTENDED]`.
pub fn source_description(
    s: &Source,
    queries: &[QueryView],
    extended: bool,
    partitions: i32,
) -> Value {
    let fields = fields(&s.columns);
    let read: Vec<Value> = queries
        .iter()
        .filter(|q| q.sources.contains(&s.name))
        .map(running_query)
        .collect();
    let write: Vec<Value> = queries
        .iter()
        .filter(|q| q.sink == s.name)
        .map(running_query)
        .collect();
    let (statistics, error_stats) = if extended {
        let consumed: u64 = queries
            .iter()
            .filter(|q| q.sources.contains(&s.name))
            .map(|q| q.consumed)
            .sum();
        let errors: u64 = queries
            .iter()
            .filter(|q| q.sources.contains(&s.name))
            .map(|q| q.decode_errors)
            .sum();
        (
            format!("messages-consumed-total: {consumed}"),
            format!("consumer-failed-messages: {errors}"),
        )
    } else {
        (String::new(), String::new())
    };
    json!({
        "name": s.name,
        "windowType": null,
        "readQueries": read,
        "writeQueries": write,
        "fields": fields,
        "type": s.kind.as_str(),
        "timestamp": s.timestamp_column.clone().unwrap_or_default(),
        "statistics": statistics,
        "errorStats": error_stats,
        "extended": extended,
        "keyFormat": s.key_format.kind.name(),
        "valueFormat": s.value_format.kind.name(),
        "topic": s.topic,
        "partitions": if extended { partitions } else { 0 },
        "replication": if extended { s.replicas as i32 } else { 0 },
        "statement": s.statement,
        "queryOffsetSummaries": [],
        "sourceConstraints": [],
        "clusterStatistics": [],
        "clusterErrorStats": []
    })
}

/// `SHOW QUERIES`.
pub fn queries(text: &str, queries: &[QueryView]) -> Value {
    let list: Vec<Value> = queries.iter().map(running_query).collect();
    json!({"@type": "queries", "statementText": text, "queries": list, "warnings": []})
}

/// `SHOW TYPES`: each name with its type's `SchemaInfo`.
pub fn types(text: &str, types: &eddy_sql::Types) -> Value {
    let map: serde_json::Map<String, Value> = types
        .iter()
        .map(|(name, t)| (name.clone(), schema_info(t)))
        .collect();
    json!({"@type": "type_list", "statementText": text, "types": map, "warnings": []})
}

/// `SHOW TOPICS`.
pub fn topics(text: &str, topics: &[TopicInfo]) -> Value {
    let list: Vec<Value> = topics
        .iter()
        .filter(|t| !t.name.starts_with("_eddy-") && !t.name.starts_with("__"))
        .map(|t| json!({"name": t.name, "replicaInfo": vec![t.replicas as i32; t.partitions.max(0) as usize]}))
        .collect();
    json!({"@type": "kafka_topics", "statementText": text, "topics": list, "warnings": []})
}

/// `SHOW PROPERTIES`.
pub fn properties(text: &str, props: &[(String, String)]) -> Value {
    let list: Vec<Value> = props
        .iter()
        .map(|(k, v)| json!({"name": k, "scope": if k.starts_with("ksql.streams.") { "STREAMS" } else { "KSQL" }, "value": v, "editable": true, "level": "SERVER"}))
        .collect();
    json!({"@type": "properties", "statementText": text, "properties": list, "overwrittenProperties": [], "defaultProperties": []})
}
