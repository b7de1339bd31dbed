//! Request and error bodies of the ksqlDB-compatible REST API, shared by the server and the shell.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// Body of `POST /ksql` and `POST /query`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KsqlRequest {
    pub ksql: String,
    #[serde(default)]
    pub streams_properties: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_sequence_number: Option<i64>,
    /// Values for `${name}` in the statements.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub session_variables: Map<String, Value>,
}

/// Body of `POST /query-stream`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueryStreamArgs {
    pub sql: String,
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Values for `${name}` in the statement.
    #[serde(
        default,
        rename = "sessionVariables",
        skip_serializing_if = "Map::is_empty"
    )]
    pub session_variables: Map<String, Value>,
}

/// Body of `POST /close-query`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseQueryArgs {
    pub query_id: String,
}

/// ksqlDB's error body (`KsqlErrorMessage` and `KsqlStatementErrorMessage`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorMessage {
    #[serde(rename = "@type")]
    pub kind: String,
    pub error_code: u32,
    pub message: String,
    #[serde(rename = "statementText", skip_serializing_if = "Option::is_none")]
    pub statement_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<Value>>,
}

impl ErrorMessage {
    /// A `generic_error` with the given code.
    pub fn generic(error_code: u32, message: impl Into<String>) -> Self {
        ErrorMessage {
            kind: "generic_error".into(),
            error_code,
            message: message.into(),
            statement_text: None,
            entities: None,
        }
    }

    /// A `statement_error` for an error raised by one statement.
    pub fn statement(error: &Error, statement_text: &str) -> Self {
        let error_code = if error.is_user_error() { 40001 } else { 50000 };
        ErrorMessage {
            kind: "statement_error".into(),
            error_code,
            message: error.to_string(),
            statement_text: Some(statement_text.to_string()),
            entities: Some(Vec::new()),
        }
    }

    /// The HTTP status this error code maps to (`error_code / 100`).
    pub fn http_status(&self) -> u16 {
        (self.error_code / 100) as u16
    }
}
