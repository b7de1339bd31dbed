//! A persistent query a server cannot run in one task — it aggregates the rows its joins make, or
//! a later join of it joins the rows of the joins before it on other than their key — runs as two
//! tasks joined by an internal topic, as Kafka Streams runs such a topology as two sub-topologies
//! (`Pipeline::split`): the joins before the split point, in a consumer group of their own
//! (`<group>-Joins` before an aggregation, `<group>-Joins-<n>` before join `n`) with their own
//! state (a stream-stream join's buffers in that group's `-Join-windowed-changelog`), write their
//! rows to the internal topic (`<group>-Aggregate-GroupBy-repartition`, ksqlDB's name, or
//! `<group>-Join-left-<n>-repartition`), each record in the partition its GROUP BY values, or its
//! next join value, hash to and in an envelope naming the input record it comes from; the rest of
//! the query, in the query's group, reads that topic as an input partitioned like its others.
//! Where it keeps state it leaves out records the joins wrote again after a crash (each shard
//! keeps, per input partition of the joins, the next input offset it folded in), so its state is
//! exact although the joins are at-least-once. The rest may be split again (an aggregation over
//! joins after a split join).

use std::sync::Arc;

use eddy_common::{Result, internal_err};
use eddy_runtime::{PersistentQuery, SinkSpec, SplitPoint, TopicAdmin};

use crate::cluster::{InternalTopic, KafkaCluster};
use crate::internal_topics::{joins_group, repartition_topic};
use crate::query_io::input_partitions;
use crate::query_task::TaskConfig;

/// The two tasks of a query split in two.
pub(crate) struct Split {
    /// The joins before the split point, writing to the internal topic.
    pub joins: PersistentQuery,
    /// How the joins run: in their own consumer group, at-least-once.
    pub joins_config: TaskConfig,
    /// The rest of the query, reading the internal topic, in the query's group.
    pub rest: PersistentQuery,
}

/// Splits `query` (run as `task` says) at its split point, creating its internal topic with as
/// many partitions as the joins' inputs have; `None` for a query that runs whole.
pub(crate) fn split(
    cluster: &KafkaCluster,
    query: &PersistentQuery,
    task: &TaskConfig,
) -> Result<Option<Split>> {
    let Some(at) = query.pipeline.split_point() else {
        return Ok(None);
    };
    let group = &task.group_id;
    let topic = match at {
        SplitPoint::Aggregation => repartition_topic(group),
        SplitPoint::Join(n) => format!("{group}-Join-left-{n}-repartition"),
    };
    let partitions = input_partitions(cluster, &query.pipeline)?;
    let Some((joins, rest)) = query.pipeline.split(partitions, &topic)? else {
        return Err(internal_err!("query {} cannot be split", query.id));
    };
    match cluster.partitions(&topic)? {
        None => cluster.create_internal_topic(&topic, InternalTopic::Query, partitions, &[])?,
        Some(n) if n != partitions => {
            return Err(eddy_common::external_err!(
                "The internal topic {topic} has {n} partitions, but the query's joined inputs now have {partitions}: the query's state is laid out by the old count. Drop the query and create it again."
            ));
        }
        Some(_) => {}
    }
    Ok(Some(Split {
        joins: PersistentQuery {
            pipeline: Arc::new(joins),
            sink_spec: SinkSpec::joined_rows(&topic, partitions)?,
            // The joins' shards are not the table pull queries read.
            shards: Default::default(),
            ..query.clone()
        },
        joins_config: TaskConfig {
            group_id: joins_group(group, at),
            // What reads their rows leaves out what they write twice.
            exactly_once: false,
            ..task.clone()
        },
        rest: PersistentQuery {
            pipeline: Arc::new(rest),
            ..query.clone()
        },
    }))
}
