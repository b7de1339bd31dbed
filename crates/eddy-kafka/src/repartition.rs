//! The repartition stage of an aggregation whose groups do not follow its input's partitions (a
//! GROUP BY on anything but a stream's key): a consumer group reads the input and writes every record,
//! unchanged, to the partition of an internal `…-Aggregate-GroupBy-repartition` topic (named as ksqlDB
//! names it) that its GROUP BY values hash to, so each group lives in one partition of that topic and
//! the aggregation keeps its state per partition of it. Kafka is the shuffle.
//!
//! Each repartitioned record carries, in an envelope, the input partition and offset it came from.
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
use crate::task::poll_batch;

/// The repartition topic of the query whose consumer group is `group_id`.
pub fn repartition_topic(group_id: &str) -> String {
    format!("{group_id}-Aggregate-GroupBy-repartition")
}

/// First byte of an envelope: the layout version.
const ENVELOPE: u8 = 1;
const HAS_KEY: u8 = 1;
const HAS_VALUE: u8 = 2;

/// Wraps a record's key and value with where it came from.
fn envelope(key: Option<&[u8]>, value: Option<&[u8]>, partition: i32, offset: i64) -> Vec<u8> {
    let (k, v) = (key.unwrap_or_default(), value.unwrap_or_default());
    let mut out = Vec::with_capacity(22 + k.len() + v.len());
    out.push(ENVELOPE);
    out.push(if key.is_some() { HAS_KEY } else { 0 } | if value.is_some() { HAS_VALUE } else { 0 });
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(v);
    out
}

/// The parts of an envelope: key, value, input partition and offset; `None` when it is not one.
type Opened<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i32, i64);

fn open_envelope(payload: &[u8]) -> Option<Opened<'_>> {
    let (&[version, flags], rest) = payload.split_first_chunk::<2>()?;
    if version != ENVELOPE || rest.len() < 16 {
        return None;
    }
    let partition = i32::from_be_bytes(rest[0..4].try_into().ok()?);
    let offset = i64::from_be_bytes(rest[4..12].try_into().ok()?);
    let key_len = u32::from_be_bytes(rest[12..16].try_into().ok()?) as usize;
    let body = &rest[16..];
    let (key, value) = (body.get(..key_len)?, body.get(key_len..)?);
    Some((
        (flags & HAS_KEY != 0).then_some(key),
        (flags & HAS_VALUE != 0).then_some(value),
        partition,
        offset,
    ))
}

/// A repartitioned message as the aggregation reads it: the original key and value with the message's
/// time and position, and the input partition and offset it came from. `None` when it is not one.
pub(crate) fn unwrap<R: RecordRef>(m: &R) -> Option<(Record, (i32, i64))> {
    let (key, value, partition, offset) = open_envelope(m.value()?)?;
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
                    value: Some(envelope(m.key(), m.value(), p, o)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_keeping_absent_and_empty_parts_apart() {
        for (key, value) in [
            (Some(&b"k"[..]), Some(&b"{}"[..])),
            (None, Some(&b""[..])),
            (Some(&b""[..]), None),
            (None, None),
        ] {
            let e = envelope(key, value, 3, 42);
            assert_eq!(open_envelope(&e), Some((key, value, 3, 42)));
        }
        assert_eq!(open_envelope(b"{\"not\": 1}"), None);
        assert_eq!(open_envelope(&[ENVELOPE, 0, 1]), None, "cut short");
    }
}
