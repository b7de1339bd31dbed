//! The `SHOW VARIABLES` entity: the session variables where the statement runs.

use serde::Serialize;
use serde_json::Value;

use eddy_sql::variables::Variables;

use crate::entity_value::entity_value;

/// `SHOW VARIABLES`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VariableList<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    variables: Vec<Variable<'a>>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Variable<'a> {
    name: &'a str,
    value: &'a str,
}

/// `SHOW VARIABLES` as ksqlDB answers it.
pub fn variable_list(text: &str, variables: &Variables) -> Value {
    let list = VariableList {
        entity_type: "variables",
        statement_text: text,
        variables: variables
            .iter()
            .map(|(name, value)| Variable { name, value })
            .collect(),
        warnings: Vec::new(),
    };
    entity_value(list)
}
