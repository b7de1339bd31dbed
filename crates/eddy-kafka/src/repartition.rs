//! The repartition stage of an aggregation whose groups do not follow its input's partitions (a
//! GROUP BY on anything but a stream's key): a consumer group reads the input and writes every record,
//! unchanged, to the partition of an internal `…-Aggregate-GroupBy-repartition` topic (named as ksqlDB
//! names it) that its GROUP BY values hash to, so each group lives in one partition of that topic and
//! the aggregation keeps its state per partition of it. Kafka is the shuffle.
//!
//! Each repartitioned record carries, in an envelope (`envelope`), the input partition and offset it came from.
//! The stage is at-least-once (it commits input offsets once the records are acknowledged), so after a
//! crash it may write some records again; the aggregation keeps, per input partition, the next input
//! offset it has folded in (with its checkpoint) and leaves out anything older, which keeps its state
//! exact. The idempotent producer keeps each partition's records in order, which that relies on.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::Result;
use eddy_runtime::{PersistentQuery, Record, RecordRef};

use crate::cluster::{KafkaCluster, kafka_err};
use crate::delivery::{Halt, deliver};
use crate::envelope;
use crate::task::poll_batch;

/// The repartition topic of the query whose consumer group is `group_id`.
pub fn repartition_topic(group_id: &str) -> String {
    format!("{group_id}-Aggregate-GroupBy-repartition")
}

/// A repartitioned message as the aggregation reads it: the original key and value with the message's
/// time and position, and the input partition and offset it came from. `None` when it is not one.
pub(crate) fn unwrap<R: RecordRef>(m: &R) -> Option<(Record, (i32, i64))> {
    let (key, value, partition, offset) = envelope::open(m.value()?)?;
    let record = Record {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        timestamp: m.timestamp(),
        partition: m.partition(),
        offset: m.offset(),
    };
    Some((record, (partition, offset)))
}

/// Reads the aggregation's input and writes it to the repartition topic.
pub(crate) struct Shuffle<'a> {
    pub cluster: &'a KafkaCluster,
    pub consumer: &'a BaseConsumer,
    pub query: &'a PersistentQuery,
    pub topic: String,
    pub partitions: i32,
    pub stop: &'a AtomicBool,
}

impl Shuffle<'_> {
    /// Moves one batch of input to the repartition topic and commits it once acknowledged. Halts
    /// when the task is stopping and could not finish (the batch is read again after a restart), or
    /// when the batch cannot be moved.
    pub(crate) fn step(&self) -> Result<(), Halt> {
        let failed = |e: eddy_common::Error| Halt::Failed(format!("repartitioning failed: {e}"));
        let batch = poll_batch(self.consumer);
        if batch.is_empty() {
            return Ok(());
        }
        let targets = self
            .query
            .pipeline
            .group_partitions(&batch, self.partitions)
            .map_err(failed)?;
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let records: Vec<Record> = batch
            .iter()
            .zip(targets)
            .map(|(m, target)| {
                let (p, o) = (m.partition(), m.offset());
                let e = next.entry(p).or_default();
                *e = (*e).max(o + 1);
                Record {
                    key: None,
                    value: Some(envelope::wrap(m.key(), m.value(), p, o)),
                    timestamp: m.timestamp(),
                    partition: target,
                    offset: 0,
                }
            })
            .collect();
        drop(batch);
        let sent = self.cluster.send(&self.topic, &records);
        deliver(
            self.cluster,
            &self.query.id,
            &self.topic,
            &records,
            sent,
            self.stop,
        )?;
        let mut tpl = TopicPartitionList::new();
        let input = &self.query.pipeline.source().topic;
        for (p, o) in next {
            tpl.add_partition_offset(input, p, Offset::Offset(o))
                .map_err(|e| failed(kafka_err(e)))?;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(query = %self.query.id, "offset commit failed: {e}");
        }
        Ok(())
    }
}
