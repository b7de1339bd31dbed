//! ksqlDB's `QueryDescription`: what `EXPLAIN` and `SHOW QUERIES EXTENDED` say of a query — its
//! output columns, sources and sinks, execution plan, topics and, for a running one, its state,
//! errors and counters.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use eddy_sql::explain::execution_plan;
use eddy_sql::planner::QueryPlan;

use crate::entity;
use crate::entity_value::entity_value;
use crate::query_view::QueryView;

/// A query, as ksqlDB describes one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryDescription {
    id: String,
    statement_text: String,
    window_type: Option<&'static str>,
    fields: Vec<Value>,
    sources: Vec<String>,
    sinks: Vec<String>,
    topology: String,
    execution_plan: String,
    overridden_properties: BTreeMap<String, String>,
    ksql_host_query_status: BTreeMap<String, String>,
    query_type: &'static str,
    query_errors: Vec<QueryError>,
    tasks_metadata: Vec<Value>,
    consumer_group_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// Eddy's counters of a running query.
    #[serde(skip_serializing_if = "Option::is_none")]
    statistics: Option<Statistics>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryError {
    error_message: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Statistics {
    consumed: u64,
    produced: u64,
    skipped_records: u64,
    expression_errors: u64,
    late_records: u64,
}

/// The entity of `EXPLAIN`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Explained<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    query_description: QueryDescription,
    warnings: Vec<String>,
}

/// The entity of `SHOW QUERIES EXTENDED`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptions<'a> {
    #[serde(rename = "@type")]
    entity_type: &'static str,
    statement_text: &'a str,
    query_descriptions: Vec<QueryDescription>,
    warnings: Vec<String>,
}

impl QueryDescription {
    /// A persistent query as it runs; `internal_topics` are those its tasks keep, `host` this
    /// server's URL when it has announced one.
    pub fn running(view: &QueryView, internal_topics: &[String], host: Option<&str>) -> Self {
        let plan = &view.pipeline.plan;
        let mut topology = format!(
            "Consumer group {}\nReads {}\nWrites {} (topic {})\n",
            view.group,
            view.input_topics.join(", "),
            view.sink,
            view.sink_topic
        );
        if !internal_topics.is_empty() {
            topology.push_str(&format!("Internal topics {}\n", internal_topics.join(", ")));
        }
        QueryDescription {
            ksql_host_query_status: host
                .map(|h| BTreeMap::from([(host_port(h), view.state.clone())]))
                .unwrap_or_default(),
            query_errors: view
                .last_error
                .iter()
                .map(|e| QueryError {
                    error_message: e.clone(),
                    kind: "USER",
                })
                .collect(),
            consumer_group_id: view.group.clone(),
            state: Some(view.state.clone()),
            statistics: Some(Statistics {
                consumed: view.consumed,
                produced: view.produced,
                skipped_records: view.decode_errors,
                expression_errors: view.expression_errors,
                late_records: view.late_records,
            }),
            topology,
            ..Self::planned(
                &view.id,
                &view.statement,
                plan,
                vec![view.sink.clone()],
                "PERSISTENT",
            )
        }
    }

    /// A query statement planned but not run: `sinks` are where it would write (none for a
    /// transient query).
    pub fn planned(
        id: &str,
        text: &str,
        plan: &QueryPlan,
        sinks: Vec<String>,
        query_type: &'static str,
    ) -> Self {
        let sources: Vec<String> = match &plan.join {
            Some(join) => join
                .leaves()
                .iter()
                .map(|s| s.source.name.clone())
                .collect(),
            None => vec![plan.source.name.clone()],
        };
        let mut topology = format!("Reads {}\n", sources.join(", "));
        for sink in &sinks {
            topology.push_str(&format!("Writes {sink}\n"));
        }
        QueryDescription {
            id: id.to_string(),
            statement_text: text.to_string(),
            window_type: plan.window.map(|w| w.window_type.as_str()),
            fields: entity::fields(&plan.columns),
            sources,
            sinks,
            topology,
            execution_plan: execution_plan(plan),
            overridden_properties: BTreeMap::new(),
            ksql_host_query_status: BTreeMap::new(),
            query_type,
            query_errors: Vec::new(),
            tasks_metadata: Vec::new(),
            consumer_group_id: String::new(),
            state: None,
            statistics: None,
        }
    }
}

/// `host:port` of a URL, as ksqlDB keys a query's status by host.
fn host_port(url: &str) -> String {
    url.split("://")
        .last()
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string()
}

/// `EXPLAIN`'s answer.
pub fn explained(text: &str, description: QueryDescription) -> Value {
    entity_value(Explained {
        entity_type: "queryDescription",
        statement_text: text,
        query_description: description,
        warnings: Vec::new(),
    })
}

/// `SHOW QUERIES EXTENDED`'s answer.
pub fn descriptions(text: &str, descriptions: Vec<QueryDescription>) -> Value {
    entity_value(Descriptions {
        entity_type: "query_descriptions",
        statement_text: text,
        query_descriptions: descriptions,
        warnings: Vec::new(),
    })
}
