//! Which task a persistent query runs as: split in two when one task cannot run it
//! (`split_query`), stateful when it keeps state (`stateful`), else stateless — at-least-once
//! (`at_least_once`), or exactly-once through Kafka transactions (`transactional`) or through
//! Eddy's own sink where the broker has none (`exactly_once`).

use std::sync::Arc;

use eddy_common::Result;
use eddy_runtime::PersistentQuery;

use crate::cluster::{KafkaCluster, kafka_err};
use crate::query_io::query_consumer;
use crate::query_task::{QueryTask, TaskConfig};
use crate::split_query::split;
use crate::transaction::uses_transactions;
use crate::{at_least_once, exactly_once, stateful, transactional};

/// Starts a persistent query with its output to the query's sink.
pub fn start_persistent(
    cluster: Arc<KafkaCluster>,
    query: PersistentQuery,
    task: &TaskConfig,
) -> Result<QueryTask> {
    let name = format!("query-{}", query.id);
    let joins = query.pipeline.inputs().len() > 1;
    // An aggregation over joins, or a join of earlier joins' rows on other than their key, runs
    // as two tasks joined by an internal topic.
    if let Some(split) = split(&cluster, &query, task)? {
        let rest = start_persistent(cluster.clone(), split.rest, task)?;
        let joins_config = TaskConfig {
            stats: Some(rest.stats.clone()),
            ..split.joins_config
        };
        let joins = start_persistent(cluster, split.joins, &joins_config)?;
        return Ok(rest.with_stage(joins));
    }
    // A stream-stream join keeps its buffers in a changelog, as an aggregation keeps its groups;
    // an exactly-once join keeps its checkpoints there (where its input stood with each write, and
    // its output), with its tables read back from their topics.
    // So do the joins before a split of a query, which hand their rows on: the rows are named
    // after the records they were made of, and a repartition stage (or earlier joins) may write
    // those records again after a crash, at new offsets; the stateful loop leaves them out by
    // their origins before joining them, so what the rest of the query reads is exact.
    if query.pipeline.persists_state()
        || (joins && task.exactly_once)
        || query.pipeline.hands_on_joined_rows()
    {
        return stateful::start(cluster, query, task, name);
    }
    if task.exactly_once {
        let config = query_consumer(&cluster, &task.group_id, &task.offset_reset);
        // A configuration the client refuses is the statement's error, not a query failing later.
        config.create_native_config().map_err(kafka_err)?;
        return if uses_transactions(&cluster)? {
            transactional::start(cluster, query, task, config, name)
        } else {
            exactly_once::start(cluster, query, task, config, name)
        };
    }
    at_least_once::start(cluster, query, task, name)
}
