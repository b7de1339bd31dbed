//! The endpoints operators ask how things stand: ksqlDB's `GET /status` (what each command did)
//! and `GET /clusterStatus` (the servers of the service id and the query state each holds), and
//! Eddy's `GET /lag` (each query's consumer lag per input partition, as JSON).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use eddy_common::rest::ErrorMessage;

use crate::command_status::CommandStatus;
use crate::request::ApiError;
use crate::state::AppState;

/// `GET /status`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandStatuses {
    command_statuses: BTreeMap<String, &'static str>,
}

pub async fn statuses(State(state): State<Arc<AppState>>) -> Json<CommandStatuses> {
    Json(CommandStatuses {
        command_statuses: state
            .command_statuses()
            .into_iter()
            .map(|(id, s)| (id, s.status))
            .collect(),
    })
}

/// `GET /status/{type}/{entity}/{action}`: one command's status; the entity may be given with or
/// without ksqlDB's backquotes.
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path((kind, entity, action)): Path<(String, String, String)>,
) -> Result<Json<CommandStatus>, ApiError> {
    let all = state.command_statuses();
    let bare = entity.trim_matches('`');
    [
        format!("{kind}/{entity}/{action}"),
        format!("{kind}/`{bare}`/{action}"),
        format!("{kind}/{bare}/{action}"),
    ]
    .iter()
    .find_map(|id| all.get(id).cloned())
    .map(Json)
    .ok_or_else(|| {
        ApiError(ErrorMessage::generic(
            40400,
            format!("Command not found: {kind}/{entity}/{action}"),
        ))
    })
}

/// `GET /clusterStatus`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    cluster_status: BTreeMap<String, HostStatus>,
}

/// One server in `/clusterStatus`, keyed by `host:port`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    host_alive: bool,
    last_status_update_ms: i64,
    active_standby_per_query: BTreeMap<String, ActiveStandby>,
    host_store_lags: HostStoreLags,
}

/// The shards of a query's state a server holds; Eddy keeps no standbys (state is restored from the
/// changelog when a shard moves).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveStandby {
    active_stores: Vec<String>,
    active_partitions: Vec<TopicPartition>,
    stand_by_stores: Vec<String>,
    stand_by_partitions: Vec<TopicPartition>,
}

#[derive(Debug, Serialize)]
pub struct TopicPartition {
    topic: String,
    partition: i32,
}

/// Standbys' lag behind the active stores: none, as there are no standbys.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStoreLags {
    state_store_lags: BTreeMap<String, i64>,
    update_time_ms: i64,
}

pub async fn cluster_status(State(state): State<Arc<AppState>>) -> Json<ClusterStatus> {
    let inputs: BTreeMap<String, Vec<String>> = state
        .query_views()
        .into_iter()
        .map(|v| (v.id, v.input_topics))
        .collect();
    let cluster_status = state
        .hosts()
        .into_iter()
        .map(|host| {
            let address = host
                .url
                .split_once("://")
                .map_or(host.url.as_str(), |(_, a)| a)
                .trim_end_matches('/')
                .to_string();
            let per_query = host
                .holdings
                .iter()
                .map(|(query, shards)| {
                    let topics = inputs.get(query).cloned().unwrap_or_default();
                    let partitions = shards
                        .iter()
                        .flat_map(|&partition| {
                            topics.iter().map(move |topic| TopicPartition {
                                topic: topic.clone(),
                                partition,
                            })
                        })
                        .collect();
                    let store = ActiveStandby {
                        active_stores: vec![format!("{query}-state")],
                        active_partitions: partitions,
                        stand_by_stores: Vec::new(),
                        stand_by_partitions: Vec::new(),
                    };
                    (query.clone(), store)
                })
                .collect();
            let status = HostStatus {
                host_alive: host.is_alive(),
                last_status_update_ms: host.at,
                active_standby_per_query: per_query,
                host_store_lags: HostStoreLags {
                    state_store_lags: BTreeMap::new(),
                    update_time_ms: host.at,
                },
            };
            (address, status)
        })
        .collect();
    Json(ClusterStatus { cluster_status })
}

/// `GET /lag`.
#[derive(Debug, Serialize)]
pub struct Lags {
    queries: Vec<QueryLag>,
}

/// A persistent query's consumer lag.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryLag {
    query_id: String,
    /// Records after the committed offsets, over every input partition.
    total: i64,
    partitions: Vec<PartitionLag>,
    /// Why the lag is not known, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PartitionLag {
    topic: String,
    partition: i32,
    lag: i64,
}

pub async fn lag(State(state): State<Arc<AppState>>) -> Result<Json<Lags>, ApiError> {
    let queries = tokio::task::spawn_blocking(move || {
        state
            .query_views()
            .into_iter()
            .map(
                |v| match eddy_kafka::consumer_lag(&state.cluster, &v.group, &v.input_topics) {
                    Ok(partitions) => QueryLag {
                        query_id: v.id,
                        total: partitions.iter().map(|p| p.lag).sum(),
                        partitions: partitions
                            .into_iter()
                            .map(|p| PartitionLag {
                                topic: p.topic,
                                partition: p.partition,
                                lag: p.lag,
                            })
                            .collect(),
                        error: None,
                    },
                    Err(e) => QueryLag {
                        query_id: v.id,
                        total: 0,
                        partitions: Vec::new(),
                        error: Some(e.to_string()),
                    },
                },
            )
            .collect()
    })
    .await
    .map_err(|e| ApiError(ErrorMessage::generic(50000, format!("internal error: {e}"))))?;
    Ok(Json(Lags { queries }))
}
