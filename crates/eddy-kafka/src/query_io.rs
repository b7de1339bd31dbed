//! What a persistent query's tasks share to read their inputs and to turn a batch of records into
//! output records.

use rdkafka::consumer::{BaseConsumer, Consumer};

use eddy_common::{Result, external_err};
use eddy_runtime::format::DecodeError;
use eddy_runtime::{PersistentQuery, Pipeline, Record, RecordRef, TopicAdmin};

use crate::cluster::KafkaCluster;
use crate::query_stats::{QueryStats, bytes_of};
use crate::supervisor::Failure;

/// The partition count of a query's inputs (a join's sides checked again: their topics may have
/// changed since the query was created; see `eddy_runtime::join::partitions`).
pub(crate) fn input_partitions(cluster: &KafkaCluster, pipeline: &Pipeline) -> Result<i32> {
    if let Some(join) = &pipeline.plan.join {
        return eddy_runtime::join::partitions(join, cluster);
    }
    let topic = &pipeline.inputs()[0].topic;
    cluster
        .partitions(topic)?
        .ok_or_else(|| external_err!("Kafka: the query's input topic {topic} does not exist"))
}

/// The configuration of a persistent query's consumer in group `group`, starting at `reset` where
/// the group has no offsets; it commits itself.
pub(crate) fn query_consumer(
    cluster: &KafkaCluster,
    group: &str,
    reset: &str,
) -> rdkafka::config::ClientConfig {
    cluster
        .reader_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", reset)
        .clone()
}

/// A consumer created with `config`, subscribed to `topic`.
pub(crate) fn subscribed(
    config: &rdkafka::config::ClientConfig,
    topic: &str,
) -> std::result::Result<BaseConsumer, Failure> {
    subscribed_to(config, &[topic.to_string()])
}

/// A consumer created with `config`, subscribed to `topics`.
pub(crate) fn subscribed_to(
    config: &rdkafka::config::ClientConfig,
    topics: &[String],
) -> std::result::Result<BaseConsumer, Failure> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| format!("cannot subscribe to {}: {e}", names.join(", ")))?;
    Ok(consumer)
}

/// The output records of a batch of input `input` (see `Pipeline::inputs`), read from `topic`. When
/// the batch fails as a whole, its records are processed one at a time, and a record that fails by
/// itself is skipped, counted and logged.
pub(crate) fn output_records<R: RecordRef>(
    query: &PersistentQuery,
    stats: &QueryStats,
    (input, topic): (usize, &str),
    batch: &[R],
) -> Vec<Record> {
    let process = |records: &[R]| {
        query.pipeline.process_input(input, records).and_then(|p| {
            stats.record_errors(&query.id, topic, &p, records);
            query.sink_spec.records(&p)
        })
    };
    match process(batch) {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(query = %query.id, "a batch failed ({e}); processing its records one by one");
            let mut out = Vec::new();
            for m in batch {
                match process(std::slice::from_ref(m)) {
                    Ok(records) => out.extend(records),
                    Err(e) => stats.skipped(
                        &query.id,
                        topic,
                        &DecodeError::processing(m.partition(), m.offset(), &e.to_string()),
                        bytes_of(m),
                    ),
                }
            }
            out
        }
    }
}
