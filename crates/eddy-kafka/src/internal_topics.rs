//! The internal topics of a persistent query, named after its consumer group as ksqlDB (Kafka
//! Streams) names them: repartition topics, changelogs, the lease of a single-shard query, the
//! checkpoints of Eddy's own exactly-once sink, and those of the joins a split query runs in a group
//! of their own (`<group>-Joins[-n]`). TERMINATE deletes every one of them.

use eddy_runtime::SplitPoint;

/// The repartition topic of the aggregation whose consumer group is `group_id`.
pub fn repartition_topic(group_id: &str) -> String {
    format!("{group_id}-Aggregate-GroupBy-repartition")
}

/// The repartition topic of a join side (`Join-left`, `Join-right`: a stream-stream join's;
/// `Join`: a stream-table join's stream; a later join of a multi-way join's, numbered:
/// `Join-right-1`) of the query whose consumer group is `group_id`.
pub(crate) fn join_repartition_topic(group_id: &str, side: &str) -> String {
    format!("{group_id}-{side}-repartition")
}

/// Whether `topic` is a join repartition topic of the query whose consumer group is `group_id`.
pub(crate) fn is_join_repartition_topic(group_id: &str, topic: &str) -> bool {
    topic
        .strip_prefix(group_id)
        .and_then(|t| t.strip_prefix("-Join"))
        .is_some_and(|t| t.ends_with("-repartition"))
}

/// The consumer group of the joins before split point `at` of a query whose group is
/// `group_id` (the prefix of the internal topics they keep).
pub(crate) fn joins_group(group_id: &str, at: SplitPoint) -> String {
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

/// The topic holding an exactly-once query's checkpoints: a partition per input partition.
pub fn checkpoint_topic(group_id: &str) -> String {
    format!("{group_id}-checkpoint")
}

/// The changelog topic of the query whose consumer group is `group_id` (named as Kafka Streams names a
/// state store's changelog).
pub fn changelog_topic(group_id: &str) -> String {
    format!("{group_id}-Aggregate-Aggregate-Materialize-changelog")
}

/// The changelog topic of a stream-stream join whose consumer group is `group_id`: both sides'
/// buffers (Kafka Streams keeps one per side, `-Join-this-` and `-Join-other-`).
pub(crate) fn join_changelog_topic(group_id: &str) -> String {
    format!("{group_id}-Join-windowed-changelog")
}

/// The topic whose only partition is the lease of a query whose state is not sharded: the server its
/// lease group gives that partition to runs the query.
pub(crate) fn lease_topic(group_id: &str) -> String {
    format!("{group_id}-lease")
}

/// Whether `topic` is one of the internal topics the task of a persistent query whose consumer
/// group is `group_id` may create.
fn is_own_topic(group_id: &str, topic: &str) -> bool {
    [
        changelog_topic(group_id),
        join_changelog_topic(group_id),
        repartition_topic(group_id),
        lease_topic(group_id),
        checkpoint_topic(group_id),
    ]
    .iter()
    .any(|t| t == topic)
        || is_join_repartition_topic(group_id, topic)
}

/// Whether `topic` is one of the internal topics of a persistent query whose consumer group is
/// `group_id`, or of the task of its joins when it is split (see `split_query`).
pub fn is_internal_topic(group_id: &str, topic: &str) -> bool {
    is_own_topic(group_id, topic)
        || joins_group_of(group_id, topic).is_some_and(|g| is_own_topic(&g, topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_s_internal_topics_are_told_from_another_query_s() {
        let group = "_eddy-s_query_CSAS_X_1";
        for topic in [
            "-Aggregate-Aggregate-Materialize-changelog",
            "-Join-windowed-changelog",
            "-Join-repartition",
            "-Join-left-repartition",
            "-Join-right-2-repartition",
            "-lease",
            "-Joins-Join-windowed-changelog",
            "-Joins-Join-right-repartition",
            "-Joins-2-Join-windowed-changelog",
            "-Join-left-2-repartition",
        ] {
            assert!(
                is_internal_topic(group, &format!("{group}{topic}")),
                "{topic}"
            );
        }
        for topic in [
            "_eddy-s_query_CSAS_X_12-Join-repartition",
            "_eddy-s_query_CSAS_X_1-Joinery",
            "_eddy-s_query_CSAS_X_1",
            "X",
        ] {
            assert!(!is_internal_topic(group, topic), "{topic}");
        }
    }

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
