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

use crate::cluster::KafkaCluster;
use crate::query_io::input_partitions;
use crate::query_task::TaskConfig;
use crate::repartition::repartition_topic;

/// The two tasks of a query split in two.
pub(crate) struct Split {
    /// The joins before the split point, writing to the internal topic.
    pub joins: PersistentQuery,
    /// How the joins run: in their own consumer group, at-least-once.
    pub joins_config: TaskConfig,
    /// The rest of the query, reading the internal topic, in the query's group.
    pub rest: PersistentQuery,
}

/// The consumer group of the joins before split point `at` of a query whose group is
/// `group_id` (the prefix of the internal topics they keep).
fn joins_group(group_id: &str, at: SplitPoint) -> String {
    match at {
        SplitPoint::Aggregation => format!("{group_id}-Joins"),
        SplitPoint::Join(n) => format!("{group_id}-Joins-{n}"),
    }
}

/// The consumer group, among those of the joins a query whose group is `group_id` may be split
/// into, that `topic` (one of their internal topics) begins with.
pub(crate) fn joins_group_of(group_id: &str, topic: &str) -> Option<String> {
    let rest = topic.strip_prefix(group_id)?.strip_prefix("-Joins")?;
    let digits = rest
        .strip_prefix('-')
        .map(|r| r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len())
        .unwrap_or(0);
    let end = "-Joins".len() + if digits > 0 { 1 + digits } else { 0 };
    Some(format!(
        "{group_id}{}",
        &topic[group_id.len()..group_id.len() + end]
    ))
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
        None => cluster.create_topic(&topic, partitions, 1)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_groups_of_a_query_s_joins_are_found_from_their_topics() {
        let g = "_eddy-s_query_CTAS_X_1";
        for (suffix, want) in [
            ("-Joins-Join-windowed-changelog", Some("-Joins")),
            ("-Joins-2-Join-right-repartition", Some("-Joins-2")),
            ("-Joins-12-Join-windowed-changelog", Some("-Joins-12")),
            ("-Join-left-2-repartition", None),
            ("-Aggregate-GroupBy-repartition", None),
        ] {
            assert_eq!(
                joins_group_of(g, &format!("{g}{suffix}")),
                want.map(|w| format!("{g}{w}")),
                "{suffix}"
            );
        }
        assert_eq!(joins_group_of(g, "other-Joins-1-x"), None);
    }
}
