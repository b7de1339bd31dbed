//! `ASSERT [NOT EXISTS] TOPIC` and `ASSERT [NOT EXISTS] SCHEMA`: wait, up to a timeout, until a
//! topic (with the given partitions and replicas) or a schema exists — or no longer does — and
//! answer ksqlDB's `assert_topic` / `assert_schema` entity, or fail saying what was found.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::entity_value::entity_value;
use eddy_common::Error;
use eddy_runtime::TopicAdmin;
use eddy_runtime::registry::SchemaRegistry;
use eddy_sql::statement::Properties;

/// How long an assertion waits when the statement gives no `TIMEOUT` (ksqlDB's
/// `ksql.assert.topic.default.timeout.ms` and `ksql.assert.schema.default.timeout.ms`).
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The longest `TIMEOUT` an assertion may wait: a request holds a server thread meanwhile.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// How often the condition is checked while waiting.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AssertTopic<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    topic_name: &'a str,
    exists: bool,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AssertSchema<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    subject: Option<&'a str>,
    id: Option<u64>,
    exists: bool,
    warnings: Vec<String>,
}

/// The wait a statement asked for, checked against [`MAX_TIMEOUT`].
fn wait_of(timeout_ms: Option<i64>) -> Result<Duration, Error> {
    match timeout_ms {
        None => Ok(DEFAULT_TIMEOUT),
        Some(ms) => {
            let wait = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            if wait > MAX_TIMEOUT {
                return Err(Error::BadRequest(format!(
                    "An ASSERT waits at most {} seconds: lower its TIMEOUT",
                    MAX_TIMEOUT.as_secs()
                )));
            }
            Ok(wait)
        }
    }
}

/// Checks `check` until it gives `Ok`, or until `wait` has passed: then its last error.
fn poll(wait: Duration, mut check: impl FnMut() -> Result<(), Error>) -> Result<(), Error> {
    let deadline = Instant::now() + wait;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// `ASSERT [NOT EXISTS] TOPIC name [WITH (PARTITIONS=n, REPLICAS=m)] [TIMEOUT ...]`.
pub fn assert_topic(
    admin: &dyn TopicAdmin,
    text: &str,
    name: &str,
    exists: bool,
    properties: &Properties,
    timeout_ms: Option<i64>,
) -> Result<Value, Error> {
    let wanted = |key: &str| -> Result<Option<i64>, Error> {
        properties
            .get(key)
            .map(|v| {
                v.text().parse::<i64>().map_err(|_| {
                    Error::BadRequest(format!("{key} must be a number, not {}", v.text()))
                })
            })
            .transpose()
    };
    if let Some(other) = properties
        .keys()
        .find(|k| !["PARTITIONS", "REPLICAS"].contains(&k.as_str()))
    {
        return Err(Error::BadRequest(format!(
            "Cannot assert unknown topic property: {other} (use PARTITIONS and REPLICAS)"
        )));
    }
    let (partitions, replicas) = (wanted("PARTITIONS")?, wanted("REPLICAS")?);
    poll(wait_of(timeout_ms)?, || {
        let found = admin.list_topics()?.into_iter().find(|t| t.name == name);
        match (found, exists) {
            (None, true) => Err(Error::Execution(format!("Topic {name} does not exist."))),
            (Some(_), false) => Err(Error::Execution(format!("Topic {name} exists."))),
            (None, false) => Ok(()),
            (Some(t), true) => {
                let mismatch = [
                    ("partitions", partitions, i64::from(t.partitions)),
                    ("replicas", replicas, i64::from(t.replicas)),
                ]
                .into_iter()
                .find_map(|(what, want, got)| {
                    want.filter(|w| *w != got)
                        .map(|w| format!("For config {what}, expected {w} got {got}"))
                });
                match mismatch {
                    Some(m) => Err(Error::Execution(format!(
                        "Mismatched configuration for topic {name}: {m}"
                    ))),
                    None => Ok(()),
                }
            }
        }
    })?;
    Ok(entity_value(AssertTopic {
        entity_type: "assert_topic",
        statement_text: text,
        topic_name: name,
        exists,
        warnings: Vec::new(),
    }))
}

/// `ASSERT [NOT EXISTS] SCHEMA [SUBJECT 'name'] [ID n] [TIMEOUT ...]`: with both, the subject's
/// latest schema must be the one of that id.
pub fn assert_schema(
    registry: &dyn SchemaRegistry,
    text: &str,
    subject: Option<&str>,
    id: Option<u64>,
    exists: bool,
    timeout_ms: Option<i64>,
) -> Result<Value, Error> {
    let described = match (subject, id) {
        (Some(s), Some(i)) => format!("subject name {s} id {i}"),
        (Some(s), None) => format!("subject name {s}"),
        (None, Some(i)) => format!("id {i}"),
        (None, None) => String::new(),
    };
    poll(wait_of(timeout_ms)?, || {
        let found = match (subject, id) {
            (Some(s), Some(i)) => registry
                .latest(s)?
                .is_some_and(|(latest, _)| u64::from(latest) == i),
            (Some(s), None) => registry.latest(s)?.is_some(),
            (None, Some(i)) => u32::try_from(i).is_ok_and(|i| registry.by_id(i).is_ok()),
            (None, None) => false,
        };
        match (found, exists) {
            (true, true) | (false, false) => Ok(()),
            (false, true) => Err(Error::Execution(format!(
                "Schema with {described} does not exist."
            ))),
            (true, false) => Err(Error::Execution(format!("Schema with {described} exists."))),
        }
    })?;
    Ok(entity_value(AssertSchema {
        entity_type: "assert_schema",
        statement_text: text,
        subject,
        id,
        exists,
        warnings: Vec::new(),
    }))
}
