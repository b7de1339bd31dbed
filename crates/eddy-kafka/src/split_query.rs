//! A persistent query that aggregates the rows its joins make runs as two tasks joined by an
//! internal topic, as Kafka Streams runs such a topology as two sub-topologies: the joins, in
//! their own consumer group (`<group>-Joins`) with their own state (a stream-stream join's buffers
//! in `<group>-Joins-Join-windowed-changelog`), write their rows to
//! `<group>-Aggregate-GroupBy-repartition` (ksqlDB's name), each record in the partition its GROUP
//! BY values hash to and in an envelope naming the input record it comes from
//! (`Pipeline::split_joins`); the aggregation reads that topic sharded per partition, as it reads
//! a repartitioned stream, and leaves out records the joins wrote again after a crash (each shard
//! keeps, per input partition of the joins, the next input offset it folded in). The joins are
//! at-least-once and the aggregation's state exact.

use std::sync::Arc;

use eddy_common::{Result, internal_err};
use eddy_runtime::{PersistentQuery, SinkSpec, TopicAdmin};
use eddy_sql::statement::SourceKind;

use crate::cluster::KafkaCluster;
use crate::query_io::input_partitions;
use crate::query_task::TaskConfig;
use crate::repartition::repartition_topic;

/// The two tasks of a query split at its joins.
pub(crate) struct Split {
    /// The joins, writing to the internal topic.
    pub joins: PersistentQuery,
    /// How the joins run: in their own consumer group, at-least-once.
    pub joins_config: TaskConfig,
    /// The aggregation over the internal topic, in the query's group.
    pub aggregation: PersistentQuery,
}

/// The consumer group of the joins of a query whose group is `group_id` (the prefix of the
/// internal topics they keep).
pub(crate) fn joins_group(group_id: &str) -> String {
    format!("{group_id}-Joins")
}

/// Splits `query` (a query aggregating what its joins make, run as `task` says), creating its
/// internal topic with as many partitions as the joins' inputs have.
pub(crate) fn split(
    cluster: &KafkaCluster,
    query: &PersistentQuery,
    task: &TaskConfig,
) -> Result<Split> {
    let partitions = input_partitions(cluster, &query.pipeline)?;
    let Some((joins, aggregation)) = query.pipeline.split_joins(partitions)? else {
        return Err(internal_err!(
            "query {} does not aggregate a join",
            query.id
        ));
    };
    // Refused when the query was created (`PersistentQuery::new`).
    if aggregation.source().kind == SourceKind::Table {
        return Err(internal_err!(
            "the rows of a join of tables cannot be split"
        ));
    }
    let topic = repartition_topic(&task.group_id);
    match cluster.partitions(&topic)? {
        None => cluster.create_topic(&topic, partitions, 1)?,
        Some(n) if n != partitions => {
            return Err(eddy_common::external_err!(
                "The internal topic {topic} has {n} partitions, but the query's joined inputs now have {partitions}: the query's state is laid out by the old count. Drop the query and create it again."
            ));
        }
        Some(_) => {}
    }
    Ok(Split {
        joins: PersistentQuery {
            pipeline: Arc::new(joins),
            sink_spec: SinkSpec::joined_rows(&topic, partitions)?,
            // The joins' shards are not the table pull queries read.
            shards: Default::default(),
            ..query.clone()
        },
        joins_config: TaskConfig {
            group_id: joins_group(&task.group_id),
            // The aggregation leaves out what the joins write twice.
            exactly_once: false,
            ..task.clone()
        },
        aggregation: PersistentQuery {
            pipeline: Arc::new(aggregation),
            ..query.clone()
        },
    })
}
