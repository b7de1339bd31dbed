//! The `SHOW CONNECTORS` and `DESCRIBE CONNECTOR` entities, in ksqlDB's shapes (`connector_list`,
//! `connector_description`), for the connectors the server runs itself.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use eddy_common::Error;
use eddy_runtime::Engine;

use crate::entity_value::entity_value;

/// The class every connector of Eddy's is.
const CLASS: &str = "MqttSource";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectorList<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    connectors: Vec<ConnectorInfo<'a>>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectorInfo<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    class_name: &'static str,
    state: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectorDescription<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    connector_class: &'static str,
    status: Status<'a>,
    sources: Vec<String>,
    topics: Vec<&'a str>,
    /// Eddy's: the MQTT side.
    mqtt_server: String,
    mqtt_topics: &'a [String],
    /// Messages written to Kafka by this server.
    messages: u64,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Status<'a> {
    name: &'a str,
    connector: State,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct State {
    state: String,
}

/// `RUNNING` (connected), `UNASSIGNED` (trying to connect) or `NOT RUNNING HERE`.
fn state(running: Option<&(u64, bool)>) -> String {
    match running {
        Some((_, true)) => "RUNNING".into(),
        Some((_, false)) => "UNASSIGNED".into(),
        None => "NOT RUNNING HERE".into(),
    }
}

/// `SHOW CONNECTORS`.
pub fn connector_list(
    text: &str,
    engine: &Engine,
    running: &BTreeMap<String, (u64, bool)>,
) -> Value {
    let connectors = engine
        .connectors()
        .keys()
        .map(|name| ConnectorInfo {
            name,
            kind: "SOURCE",
            class_name: CLASS,
            state: state(running.get(name)),
        })
        .collect();
    entity_value(ConnectorList {
        entity_type: "connector_list",
        statement_text: text,
        connectors,
        warnings: Vec::new(),
    })
}

/// `DESCRIBE CONNECTOR name`.
pub fn connector_description(
    text: &str,
    engine: &Engine,
    running: &BTreeMap<String, (u64, bool)>,
    name: &str,
) -> Result<Value, Error> {
    let c = engine
        .connectors()
        .get(name)
        .ok_or_else(|| Error::Plan(format!("Connector {name} does not exist.")))?;
    Ok(entity_value(ConnectorDescription {
        entity_type: "connector_description",
        statement_text: text,
        connector_class: CLASS,
        status: Status {
            name: &c.name,
            connector: State {
                state: state(running.get(name)),
            },
            kind: "source",
        },
        sources: Vec::new(),
        topics: vec![c.mqtt.kafka_topic.as_str()],
        mqtt_server: format!("tcp://{}:{}", c.mqtt.host, c.mqtt.port),
        mqtt_topics: &c.mqtt.topics,
        messages: running.get(name).map_or(0, |(m, _)| *m),
        warnings: Vec::new(),
    }))
}
