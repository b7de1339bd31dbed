//! The `/ksql` response entities, shaped as ksqlDB serializes them.

use serde_json::{Value, json};

use eddy_runtime::{Engine, Outcome, TopicInfo};
use eddy_sql::SqlType;
use eddy_sql::catalog::Source;
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

/// `sourceDescription` of `DESCRIBE [EXTENDED]`.
pub fn source_description(
    s: &Source,
    queries: &[QueryView],
    extended: bool,
    partitions: i32,
) -> Value {
    let fields: Vec<Value> = s
        .columns
        .iter()
        .map(|c| {
            let mut f = json!({"name": c.name, "schema": schema_info(&c.sql_type)});
            if c.role == ColumnRole::Key {
                f["type"] = json!("KEY");
            }
            f
        })
        .collect();
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

/// `SHOW QUERIES [EXTENDED]`.
pub fn queries(text: &str, queries: &[QueryView], extended: bool) -> Value {
    if !extended {
        let list: Vec<Value> = queries.iter().map(running_query).collect();
        return json!({"@type": "queries", "statementText": text, "queries": list, "warnings": []});
    }
    let list: Vec<Value> = queries
        .iter()
        .map(|q| {
            json!({
                "id": q.id,
                "statementText": q.statement,
                "windowType": null,
                "fields": [],
                "sources": q.sources,
                "sinks": [q.sink],
                "topology": "",
                "executionPlan": "",
                "overriddenProperties": {},
                "ksqlHostQueryStatus": {},
                "queryType": "PERSISTENT",
                "queryErrors": q.last_error.iter().map(|e| json!({"errorMessage": e, "type": "USER"})).collect::<Vec<_>>(),
                "state": q.state,
                "statistics": {
                    "consumed": q.consumed,
                    "produced": q.produced,
                    "skippedRecords": q.decode_errors,
                    "expressionErrors": q.expression_errors,
                    "lateRecords": q.late_records
                }
            })
        })
        .collect();
    json!({"@type": "query_descriptions", "statementText": text, "queryDescriptions": list, "warnings": []})
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

/// `SHOW FUNCTIONS`: built-ins and plugin functions, with where each comes from (`source`).
pub fn functions(text: &str, engine: &Engine) -> Value {
    let state = engine.planner().state();
    let plugins = engine.plugin_functions();
    let mut list: Vec<(String, &str, String)> = state
        .scalar_functions()
        .keys()
        .map(|n| (n, "SCALAR"))
        .chain(state.aggregate_functions().keys().map(|n| (n, "AGGREGATE")))
        .filter(|(n, _)| plugins.get(n).is_none())
        .map(|(n, ty)| (n.to_uppercase(), ty, "built-in".to_string()))
        .chain(plugins.iter().map(|(plugin, f)| {
            (
                f.name.clone(),
                kind_name(f.kind),
                plugin.path.display().to_string(),
            )
        }))
        .collect();
    list.sort();
    list.dedup();
    let items: Vec<Value> = list
        .into_iter()
        .map(|(name, ty, source)| {
            let category = if source == "built-in" {
                "OTHER"
            } else {
                "PLUGIN"
            };
            json!({"name": name, "type": ty, "category": category, "source": source})
        })
        .collect();
    json!({"@type": "function_names", "statementText": text, "functions": items, "warnings": []})
}

fn kind_name(kind: eddy_udf::Kind) -> &'static str {
    match kind {
        eddy_udf::Kind::Scalar => "SCALAR",
        eddy_udf::Kind::Aggregate => "AGGREGATE",
        eddy_udf::Kind::Table => "TABLE",
    }
}

/// `DESCRIBE FUNCTION`: a plugin function's signatures, description, author, version, plugin file and
/// its SHA-256; or a built-in's DataFusion signature.
pub fn describe_function(text: &str, engine: &Engine, name: &str) -> Option<Value> {
    if let Some((plugin, f)) = engine.plugin_functions().get(name) {
        let info = &plugin.manifest.plugin;
        let variations: Vec<Value> = f
            .overloads
            .iter()
            .map(|o| {
                let arguments: Vec<Value> = o
                    .spec
                    .params
                    .iter()
                    .zip(&o.params)
                    .map(|(p, t)| {
                        json!({"name": p.name, "type": t.to_string(), "description": if p.constant { "constant" } else { "" }, "isVariadic": p.variadic})
                    })
                    .collect();
                json!({
                    "arguments": arguments,
                    "argumentTypes": o.params.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                    "returnType": o.returns.to_string(),
                    "description": o.spec.description,
                })
            })
            .collect();
        let description = f
            .overloads
            .iter()
            .map(|o| o.spec.description.as_str())
            .find(|d| !d.is_empty())
            .unwrap_or(&info.description);
        return Some(json!({
            "@type": "describe_function",
            "statementText": text,
            "name": f.name,
            "description": description,
            "author": info.authors,
            "version": info.version,
            "path": plugin.path.display().to_string(),
            "sha256": plugin.sha256,
            "plugin": info.name,
            "type": kind_name(f.kind),
            "functions": variations,
            "warnings": []
        }));
    }
    let state = engine.planner().state();
    let lower = name.to_lowercase();
    let (ty, signature) = if let Some(f) = state.scalar_functions().get(&lower) {
        ("SCALAR", format!("{:?}", f.signature().type_signature))
    } else if let Some(f) = state.aggregate_functions().get(&lower) {
        ("AGGREGATE", format!("{:?}", f.signature().type_signature))
    } else {
        return None;
    };
    Some(json!({
        "@type": "describe_function",
        "statementText": text,
        "name": name,
        "description": format!("Built-in function (DataFusion {lower})."),
        "author": "Eddy",
        "version": eddy_common::VERSION,
        "path": "internal",
        "type": ty,
        "functions": [{"arguments": [], "argumentTypes": [signature], "returnType": "", "description": ""}],
        "warnings": []
    }))
}
