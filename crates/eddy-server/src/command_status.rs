//! What a statement that changed something did, as ksqlDB names it: a command id
//! (``stream/`NAME`/create``) and a status, answered by `/ksql` and kept for `GET /status`.

use serde::Serialize;

use eddy_runtime::Outcome;
use eddy_sql::statement::SourceKind;

/// A command's status (ksqlDB's `CommandStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandStatus {
    pub status: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
}

/// The command id of what a statement did, and its status.
pub fn command_status(outcome: &Outcome) -> (String, CommandStatus) {
    let (command_id, message, query_id) = match outcome {
        Outcome::SourceCreated { kind, name } | Outcome::SourceExists { kind, name } => (
            format!("{}/`{name}`/create", kind.as_str().to_lowercase()),
            match (kind, matches!(outcome, Outcome::SourceExists { .. })) {
                (SourceKind::Stream, false) => "Stream created".to_string(),
                (SourceKind::Table, false) => "Table created".to_string(),
                (k, true) => format!(
                    "Cannot add {} {name}: it already exists.",
                    k.as_str().to_lowercase()
                ),
            },
            None,
        ),
        Outcome::QueryCreated {
            query_id,
            kind,
            sink,
        } => (
            match kind {
                Some(k) => format!("{}/`{sink}`/create", k.as_str().to_lowercase()),
                None => format!("stream/`{sink}`/insert"),
            },
            format!("Created query with ID {query_id}"),
            Some(query_id.clone()),
        ),
        Outcome::Dropped {
            kind, name, topic, ..
        } => (
            format!("{}/{name}/drop", kind.as_str().to_lowercase()),
            format!("Source `{name}` (topic: {topic}) was dropped."),
            None,
        ),
        Outcome::DropSkipped { kind, name } => (
            format!("{}/{name}/drop", kind.as_str().to_lowercase()),
            format!("Source `{name}` does not exist."),
            None,
        ),
        Outcome::Terminated { query_ids } => (
            format!(
                "terminate/{}/execute",
                query_ids.first().cloned().unwrap_or_else(|| "ALL".into())
            ),
            "Query terminated.".to_string(),
            None,
        ),
        Outcome::Inserted => ("insert/values".to_string(), "Inserted".to_string(), None),
        Outcome::Altered { kind, name } => (
            format!("{}/`{name}`/alter", kind.as_str().to_lowercase()),
            match kind {
                SourceKind::Stream => "Stream altered".to_string(),
                SourceKind::Table => "Table altered".to_string(),
            },
            None,
        ),
        Outcome::FunctionsReloaded(report) => {
            ("functions/reload".to_string(), report.message(), None)
        }
        Outcome::TypeRegistered {
            name,
            sql_type,
            existed,
        } => (
            format!("type/`{name}`/create"),
            if *existed {
                format!("Type '{name}' is already registered with type: {sql_type}")
            } else {
                format!("Registered custom type with name '{name}' and SQL type {sql_type}")
            },
            None,
        ),
        Outcome::ModelRegistered {
            name,
            version,
            existed,
            ..
        } => (
            format!("model/`{name}`/create"),
            if *existed {
                format!("Model '{name}' has this graph and card as version {version} already")
            } else {
                format!("Registered version {version} of model '{name}'")
            },
            None,
        ),
        Outcome::ModelAliased {
            name,
            alias,
            before,
            route,
        } => (
            format!("model/`{name}`/alter"),
            match (route, before) {
                (Some(r), Some(b)) => {
                    format!("Alias '{alias}' of model '{name}' moved from version {b} to {r}")
                }
                (Some(r), None) => {
                    format!("Alias '{alias}' of model '{name}' points at version {r}")
                }
                (None, _) => format!("Alias '{alias}' of model '{name}' removed"),
            },
            None,
        ),
        Outcome::ModelDropped { name, versions } => (
            format!("model/`{name}`/drop"),
            if versions.is_empty() {
                format!("Model '{name}' does not exist.")
            } else {
                let list: Vec<String> = versions.iter().map(u32::to_string).collect();
                format!("Dropped version {} of model '{name}'", list.join(", "))
            },
            None,
        ),
        Outcome::ConnectorCreated { name, existed } => (
            format!("connector/`{name}`/create"),
            if *existed {
                format!("Connector {name} already exists.")
            } else {
                format!("Created connector {name}")
            },
            None,
        ),
        Outcome::ConnectorDropped { name, existed } => (
            format!("connector/`{name}`/drop"),
            if *existed {
                format!("Dropped connector \"{name}\"")
            } else {
                format!("Connector {name} does not exist.")
            },
            None,
        ),
        Outcome::TypeDropped { name, existed } => (
            format!("type/`{name}`/drop"),
            if *existed {
                format!("Dropped type '{name}'")
            } else {
                format!("Type '{name}' does not exist.")
            },
            None,
        ),
    };
    (
        command_id,
        CommandStatus {
            status: "SUCCESS",
            message,
            query_id,
        },
    )
}
