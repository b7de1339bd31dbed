//! Runs one QTT test case in-process: statements through the engine over in-memory topics, inputs
//! serialized in their topic's formats, queries driven one after another in creation order, outputs
//! compared with ksqlDB's rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use eddy_common::Error;
use eddy_runtime::engine::Properties;
use eddy_runtime::functions::PluginDir;
use eddy_runtime::record::Headers;
use eddy_runtime::registry::{RegisteredSchema, SchemaKind, SchemaRegistry, subject};
use eddy_runtime::{Engine, MemoryTopics, Outcome, Record, TopicAdmin};
use eddy_sql::catalog::Source;
use eddy_sql::statement::{ColumnRole, Statement};

use crate::codec::PartCodec;
use crate::compare::difference;
use crate::qtt::{TestCase, TestRecord, TestTopic};

/// Partition count ksqlDB's runner gives topics declared by `CREATE` statements.
const DEFAULT_TEST_PARTITIONS: i32 = 4;

/// The verdict on one case.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Pass,
    /// The engine ran but the result differs; the first difference.
    Fail(String),
    /// A statement failed that should not have (often: a feature Eddy lacks).
    Error(String),
    /// `"enabled": false` in the file.
    Disabled,
}

/// Runs one case, with the functions of `plugins`.
pub fn run_case(case: &TestCase, plugins: Option<&Arc<PluginDir>>) -> Status {
    if !case.enabled {
        return Status::Disabled;
    }
    match std::panic::catch_unwind(|| run(case, plugins)) {
        Ok(s) => s,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Status::Error(format!("panic (a bug in Eddy): {msg}"))
        }
    }
}

fn run(case: &TestCase, plugins: Option<&Arc<PluginDir>>) -> Status {
    let topics = Arc::new(MemoryTopics::new());
    // Each case runs once, in memory: its queries' state needs no changelog.
    let mut engine = Engine::new(topics.clone()).with_volatile_state();
    if let Some(dir) = plugins {
        engine.attach_plugins(dir.clone());
    }
    let registry = engine.schema_registry().clone();
    if let Err(e) = prepare_topics(case, topics.as_ref(), registry.as_ref()) {
        return Status::Error(e.to_string());
    }
    let props: Properties = case
        .properties
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    let mut queries = Vec::new();
    // ksqlDB reads a test's statements as one script, a statement per line: positions in its
    // errors count lines across them.
    for (line, text) in case.statements.iter().enumerate() {
        let placed = format!("{}{text}", "\n".repeat(line));
        match execute(&mut engine, &placed, &props) {
            Ok(ids) => queries.extend(ids),
            Err(e) => {
                // ksqlDB's statement exceptions end with the statement.
                let message = format!("{e}\nStatement: {text}");
                return match &case.expected_exception {
                    Some(expected) => match &expected.message {
                        Some(m) if !message.contains(m.as_str()) => Status::Fail(format!(
                            "expected an error containing {m:?} but got {message:?}"
                        )),
                        _ => Status::Pass,
                    },
                    None => Status::Error(e.to_string()),
                };
            }
        }
    }
    if let Some(expected) = &case.expected_exception {
        return Status::Fail(format!(
            "expected an error ({}) but every statement succeeded",
            expected
                .message
                .as_deref()
                .or(expected.kind.as_deref())
                .unwrap_or("any")
        ));
    }
    if queries.is_empty() {
        return Status::Fail("the test did not generate any queries".to_string());
    }
    for id in &queries {
        if let Err(e) = drive(&engine, id, case, &topics, &registry) {
            return Status::Error(e.to_string());
        }
    }
    let sink = |topic: &str| source_for_topic(&engine, topic);
    let mut read = |topic: &str| Ok(topics.records(topic));
    if let Some(diff) = verify_outputs(case, &sink, &mut read, &registry) {
        return Status::Fail(diff);
    }
    match verify_post(&engine, case, &topics) {
        Some(diff) => Status::Fail(diff),
        None => Status::Pass,
    }
}

/// Creates the topics ksqlDB's runner creates before any statement runs, and registers the schemas
/// the test gives for them.
pub fn prepare_topics(
    case: &TestCase,
    topics: &dyn TopicAdmin,
    registry: &dyn SchemaRegistry,
) -> Result<(), Error> {
    // The topics `CREATE` statements declare, with their partition counts.
    let mut declared: Vec<(String, Option<i32>, bool)> = Vec::new();
    for text in &case.statements {
        let Ok(parsed) = eddy_sql::parse(text) else {
            continue;
        };
        for p in parsed {
            if let Statement::CreateSource(c) = &p.statement
                && c.query.is_none()
                && let Some(topic) = c.properties.get("KAFKA_TOPIC")
            {
                let partitions = c
                    .properties
                    .get("PARTITIONS")
                    .and_then(|p| p.text().parse().ok());
                declared.push((topic.text(), partitions, !c.columns.is_empty()));
            }
        }
    }
    let partitions_of = |topic: &str| {
        declared
            .iter()
            .find(|(t, p, _)| t == topic && p.is_some())
            .and_then(|(_, p, _)| *p)
    };
    for t in &case.topics {
        let partitions = t.partitions.or_else(|| partitions_of(&t.name)).unwrap_or(1);
        topics.create_topic(&t.name, partitions, 1)?;
        register_test_schemas(t, registry)?;
    }
    for (topic, partitions, with_columns) in &declared {
        if *with_columns {
            topics.create_topic(topic, partitions.unwrap_or(DEFAULT_TEST_PARTITIONS), 1)?;
        }
    }
    for r in case.inputs.iter().chain(&case.outputs) {
        topics.create_topic(&r.topic, 1, 1)?;
    }
    Ok(())
}

/// Registers a test topic's key and value schemas under its subjects.
fn register_test_schemas(t: &TestTopic, registry: &dyn SchemaRegistry) -> Result<(), Error> {
    let parts = [
        (&t.key_schema, &t.key_format, t.key_schema_id, true),
        (&t.value_schema, &t.value_format, t.value_schema_id, false),
    ];
    for (schema, format, id, key) in parts {
        let Some(schema) = schema else { continue };
        let kind = match format.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("PROTOBUF") => SchemaKind::Protobuf,
            Some("JSON_SR") => SchemaKind::Json,
            Some(_) | None => match schema {
                Value::String(s) if s.contains("syntax") || s.contains("message ") => {
                    SchemaKind::Protobuf
                }
                _ => SchemaKind::Avro,
            },
        };
        let text = match (schema, kind) {
            (Value::String(s), SchemaKind::Protobuf) => s.clone(),
            (other, _) => other.to_string(),
        };
        let (subject, schema) = (subject(&t.name, key), RegisteredSchema { kind, text });
        match id {
            Some(id) => registry.register_with_id(&subject, &schema, id)?,
            None => {
                registry.register(&subject, &schema)?;
            }
        }
    }
    Ok(())
}

/// Executes one statement text; returns the ids of persistent queries it created.
fn execute(engine: &mut Engine, text: &str, props: &Properties) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    let types = engine.types().clone();
    for stmt in eddy_sql::parse_with(text, &mut Default::default(), &types)? {
        match &stmt.statement {
            Statement::Set { .. } | Statement::Unset { .. } => {}
            Statement::Select(_) | Statement::Print { .. } => {
                return Err(eddy_common::not_supported!(
                    "transient queries in QTT statements"
                ));
            }
            _ => {
                if let Outcome::QueryCreated { query_id, .. } = engine.execute(&stmt, props)? {
                    ids.push(query_id);
                }
            }
        }
    }
    Ok(ids)
}

/// Feeds a query its source topics: the test's inputs first (in the file's order, across the sides of
/// a join), then what is already in the topics (in time order across a join's sides).
fn drive(
    engine: &Engine,
    id: &str,
    case: &TestCase,
    topics: &MemoryTopics,
    registry: &Arc<dyn SchemaRegistry>,
) -> Result<(), Error> {
    let Some(query) = engine.query(id) else {
        return Ok(());
    };
    let inputs = query.pipeline.inputs();
    let mut records: Vec<(usize, Record)> = Vec::new();
    let mut offsets = vec![0i64; inputs.len()];
    for r in &case.inputs {
        for (i, source) in inputs.iter().enumerate() {
            if r.topic == source.topic {
                records.push((
                    i,
                    Record {
                        offset: offsets[i],
                        ..encode_input(source, r, registry)?
                    },
                ));
                offsets[i] += 1;
            }
        }
    }
    let mut existing: Vec<(usize, Record)> = inputs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| topics.records(&s.topic).into_iter().map(move |r| (i, r)))
        .collect();
    if inputs.len() > 1 {
        existing.sort_by_key(|(_, r)| r.timestamp);
    }
    records.extend(existing);
    // Per-record emission: each input is processed on its own, as ksqlDB's runner does.
    for (i, r) in &records {
        let processed = query.pipeline.process_input(*i, std::slice::from_ref(r))?;
        let out = query.sink_spec.records(&processed)?;
        topics.append(&query.sink_spec.topic, out);
    }
    Ok(())
}

/// A test file's input record in the formats of `source`, the source over its topic (partition 0).
pub fn encode_input(
    source: &Source,
    r: &TestRecord,
    registry: &Arc<dyn SchemaRegistry>,
) -> Result<Record, Error> {
    let key = PartCodec::of(source, ColumnRole::Key, registry);
    let value = PartCodec::of(source, ColumnRole::Value, registry);
    Ok(Record {
        key: key
            .key_to_bytes(&r.key, r.window.as_ref())
            .map_err(|e| Error::Execution(format!("input key: {e}")))?,
        value: value
            .to_bytes(&r.value)
            .map_err(|e| Error::Execution(format!("input value: {e}")))?,
        timestamp: r.timestamp.unwrap_or(0),
        partition: 0,
        offset: 0,
        headers: input_headers(r.headers.as_ref())?,
    })
}

/// A test record's `headers`: `[{"KEY": "k", "VALUE": "<base64>" | null}, ...]`.
pub fn input_headers(headers: Option<&Value>) -> Result<Headers, Error> {
    use base64::Engine as _;
    let bad = |why: &str| Error::Execution(format!("input headers: {why}"));
    let Some(headers) = headers.filter(|h| !h.is_null()) else {
        return Ok(Vec::new());
    };
    headers
        .as_array()
        .ok_or_else(|| bad("expected an array"))?
        .iter()
        .map(|h| {
            let key = h["KEY"]
                .as_str()
                .ok_or_else(|| bad("a header has no KEY"))?;
            let value = match &h["VALUE"] {
                Value::Null => None,
                Value::String(b64) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| bad(&format!("VALUE of {key} is not base64: {e}")))?,
                ),
                _ => return Err(bad("a header's VALUE is base64 text or null")),
            };
            Ok((key.to_string(), value))
        })
        .collect()
}

/// The source (stream or table) over `topic`, if any.
pub fn source_for_topic(engine: &Engine, topic: &str) -> Option<Arc<Source>> {
    engine
        .catalog()
        .sources()
        .find(|s| s.topic == topic)
        .cloned()
}

/// Compares the records of each topic named in `outputs` (`records` reads a topic, `sink` finds the
/// source that gives its formats) with the expected ones; the first difference.
pub fn verify_outputs(
    case: &TestCase,
    sink: &dyn Fn(&str) -> Option<Arc<Source>>,
    records: &mut dyn FnMut(&str) -> Result<Vec<Record>, Error>,
    registry: &Arc<dyn SchemaRegistry>,
) -> Option<String> {
    let mut by_topic: BTreeMap<&str, Vec<&TestRecord>> = BTreeMap::new();
    for r in &case.outputs {
        by_topic.entry(r.topic.as_str()).or_default().push(r);
    }
    for (topic, expected) in by_topic {
        let actual = match records(topic) {
            Ok(r) => r,
            Err(e) => return Some(format!("topic {topic}: cannot read it: {e}")),
        };
        let codecs = sink(topic).map(|s| {
            (
                PartCodec::of(&s, ColumnRole::Key, registry),
                PartCodec::of(&s, ColumnRole::Value, registry),
            )
        });
        let decode = |r: &Record| -> (Value, Value, Option<Value>) {
            match &codecs {
                Some((k, v)) => {
                    let (key, window) = k.key_to_json(r.key.as_deref());
                    (key, v.to_json(r.value.as_deref()), window)
                }
                None => (
                    bytes_json(r.key.as_deref()),
                    bytes_json(r.value.as_deref()),
                    None,
                ),
            }
        };
        for (i, e) in expected.iter().enumerate() {
            let Some(a) = actual.get(i) else {
                return Some(format!(
                    "topic {topic}: expected {} records but got {}; record {i} is missing: {}",
                    expected.len(),
                    actual.len(),
                    show(e)
                ));
            };
            let (key, value, window) = decode(a);
            if e.window != window {
                return Some(format!(
                    "topic {topic}, record {i}: expected window {} but got {}",
                    e.window
                        .as_ref()
                        .map_or("none".to_string(), Value::to_string),
                    window.as_ref().map_or("none".to_string(), Value::to_string),
                ));
            }
            if let Some(d) = difference(&e.key, &key) {
                return Some(format!("topic {topic}, record {i}, key: {d}"));
            }
            if let Some(d) = difference(&e.value, &value) {
                return Some(format!("topic {topic}, record {i}, value: {d}"));
            }
            if let Some(ts) = e.timestamp
                && !(case.inputs.is_empty() && ts == 0)
                && ts != a.timestamp
            {
                return Some(format!(
                    "topic {topic}, record {i}: expected timestamp {ts} but got {}",
                    a.timestamp
                ));
            }
        }
        if actual.len() > expected.len() {
            let (k, v, _) = decode(&actual[expected.len()]);
            return Some(format!(
                "topic {topic}: expected {} records but got {}; the first extra one is key={k} value={v}",
                expected.len(),
                actual.len()
            ));
        }
    }
    None
}

fn bytes_json(b: Option<&[u8]>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
    }
}

fn show(r: &TestRecord) -> String {
    format!("key={} value={}", r.key, r.value)
}

/// Checks `post.sources` (existence, type, schema) and `post.topics.blacklist`.
fn verify_post(engine: &Engine, case: &TestCase, topics: &MemoryTopics) -> Option<String> {
    let post = case.post.as_ref()?;
    if let Some(sources) = post.get("sources").and_then(Value::as_array) {
        for s in sources {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            let Some(actual) = engine.catalog().get(name) else {
                return Some(format!("post: source {name} does not exist"));
            };
            if let Some(t) = s.get("type").and_then(Value::as_str)
                && !t.eq_ignore_ascii_case(actual.kind.as_str())
            {
                return Some(format!(
                    "post: source {name} is a {} not a {t}",
                    actual.kind.as_str()
                ));
            }
            if let Some(schema) = s.get("schema").and_then(Value::as_str) {
                let have = normalize_schema(&eddy_sql::catalog::schema_text(&actual.columns));
                let want = normalize_schema(schema);
                if have != want {
                    return Some(format!("post: source {name} has schema {have} not {want}"));
                }
            }
        }
    }
    if let Some(pattern) = post.pointer("/topics/blacklist").and_then(Value::as_str) {
        let re = match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(r) => r,
            Err(e) => return Some(format!("post: bad blacklist pattern: {e}")),
        };
        if let Ok(list) = topics.list_topics()
            && let Some(t) = list.iter().find(|t| re.is_match(&t.name))
        {
            return Some(format!(
                "post: topic {} matches the blacklist {pattern}",
                t.name
            ));
        }
    }
    None
}

fn normalize_schema(s: &str) -> String {
    s.replace('`', "")
        .replace("INTEGER", "INT")
        .replace("VARCHAR", "STRING")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
        .replace("PRIMARY KEY", "KEY")
        .replace(" ,", ",")
        .replace(", ", ",")
        .replace(",", ", ")
}
