//! Stateful persistent queries (aggregations) over Kafka. The state is restored from the query's
//! changelog topic, whose checkpoint says where to resume the input; every commit interval the task
//! emits the changed rows, waits until the sink has them, writes the state changes and a checkpoint
//! to the changelog, waits again, and only then commits. A crash at any point restores to a state
//! that replay finishes exactly (see `eddy_runtime::changelog`): nothing lost, nothing counted twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::{Result, external_err};
use eddy_runtime::changelog::StateChange;
use eddy_runtime::{PersistentQuery, Record, TopicAdmin};

use crate::cluster::{Deliveries, KafkaCluster, kafka_err, now_millis};
use crate::task::{QueryStats, deliver, poll_batch};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The changelog topic of the query whose consumer group is `group_id` (named as Kafka Streams names a
/// state store's changelog).
pub fn changelog_topic(group_id: &str) -> String {
    format!("{group_id}-Aggregate-Aggregate-Materialize-changelog")
}

/// The thread of a stateful persistent query.
pub(crate) struct StatefulLoop<'a> {
    pub cluster: &'a KafkaCluster,
    pub consumer: &'a BaseConsumer,
    pub query: &'a PersistentQuery,
    pub topic: &'a str,
    pub changelog: String,
    /// Where to start reading the input when the changelog has no checkpoint yet.
    pub offset_reset: &'a str,
    pub stop: &'a AtomicBool,
    pub stats: &'a QueryStats,
}

/// Output records handed to the producer, not yet acknowledged.
struct Sent {
    records: Vec<Record>,
    deliveries: Option<Deliveries>,
}

impl StatefulLoop<'_> {
    pub fn run(&self) {
        let mut positions = loop {
            match self.restore() {
                Ok(p) => break p,
                Err(e) => {
                    self.report(&format!("restoring the state failed, retrying: {e}"));
                    std::thread::sleep(Duration::from_secs(1));
                    if self.stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }
        };
        let mut sent: Vec<Sent> = Vec::new();
        let mut last_write = Instant::now();
        let mut unwritten = false;
        while !self.stop.load(Ordering::SeqCst) {
            let batch = poll_batch(self.consumer);
            if !batch.is_empty() {
                let processed = self.query.pipeline.process(&batch).and_then(|p| {
                    self.stats.record_errors(&self.query.id, self.topic, &p);
                    self.query.sink_spec.records(&p)
                });
                match processed {
                    Ok(records) => self.send(records, &mut sent),
                    // The state cannot be trusted past a batch that failed half-way: stop, so that a
                    // restart restores it and replays.
                    Err(e) => {
                        self.report(&format!(
                            "processing failed; the query stops and resumes from its last checkpoint after a restart: {e}"
                        ));
                        return;
                    }
                }
                // Counted once processed: a host that sees the count sees the state it led to.
                self.stats
                    .consumed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for m in &batch {
                    let next = positions.entry(m.0.partition()).or_default();
                    *next = (*next).max(m.0.offset() + 1);
                }
                unwritten = true;
            }
            if unwritten && last_write.elapsed() >= self.query.commit_interval {
                if !self.write(&mut sent, &positions) {
                    return;
                }
                unwritten = false;
                last_write = Instant::now();
            }
        }
        if unwritten {
            self.write(&mut sent, &positions);
        }
    }

    /// Reads the changelog into the query's state and assigns the input's partitions from the
    /// restored positions. Returns those positions.
    fn restore(&self) -> Result<BTreeMap<i32, i64>> {
        if self.cluster.partitions(&self.changelog)?.is_none() {
            self.cluster.create_topic(&self.changelog, 1, 1)?;
        }
        let records = self.read_changelog()?;
        let restored = records.len();
        let resume = self.query.pipeline.restore(records)?.unwrap_or_default();
        tracing::info!(
            query = %self.query.id,
            records = restored,
            "restored the state from {}",
            self.changelog
        );
        let partitions = self.cluster.partitions(self.topic)?.ok_or_else(|| {
            external_err!(
                "Kafka: the query's input topic {} does not exist",
                self.topic
            )
        })?;
        let mut all = TopicPartitionList::new();
        for p in 0..partitions {
            all.add_partition(self.topic, p);
        }
        let committed = self
            .consumer
            .committed_offsets(all, METADATA_TIMEOUT)
            .map_err(kafka_err)?;
        let mut assignment = TopicPartitionList::new();
        let mut positions = BTreeMap::new();
        for p in 0..partitions {
            let from_checkpoint = resume.iter().find(|(rp, _)| *rp == p).map(|(_, o)| *o);
            let from_group =
                committed
                    .find_partition(self.topic, p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
            let offset = match from_checkpoint.or(from_group) {
                Some(o) => {
                    positions.insert(p, o);
                    Offset::Offset(o)
                }
                None if self.offset_reset == "earliest" => Offset::Beginning,
                None => Offset::End,
            };
            assignment
                .add_partition_offset(self.topic, p, offset)
                .map_err(kafka_err)?;
        }
        self.consumer.assign(&assignment).map_err(kafka_err)?;
        Ok(positions)
    }

    /// Every record of the changelog topic, in order.
    fn read_changelog(&self) -> Result<Vec<StateChange>> {
        let mut records = Vec::new();
        self.cluster.read_to_end(
            &self.changelog,
            Duration::from_secs(300),
            Some(self.stop),
            |m| {
                records.push(StateChange {
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().map(<[u8]>::to_vec),
                })
            },
        )?;
        Ok(records)
    }

    fn send(&self, records: Vec<Record>, sent: &mut Vec<Sent>) {
        if records.is_empty() {
            return;
        }
        let deliveries = match self.cluster.send(&self.query.sink_spec.topic, &records) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(query = %self.query.id, "producing to {} failed: {e}", self.query.sink_spec.topic);
                None
            }
        };
        sent.push(Sent {
            records,
            deliveries,
        });
    }

    /// Emits the changed rows, waits until the sink has every output so far, writes the state
    /// changes and the checkpoint, then commits. Returns false when the task is stopping and could
    /// not finish (the next start replays from the last checkpoint).
    fn write(&self, sent: &mut Vec<Sent>, positions: &BTreeMap<i32, i64>) -> bool {
        let query = self.query;
        let flushed = query
            .pipeline
            .flush()
            .and_then(|f| f.map(|p| query.sink_spec.records(&p)).transpose());
        match flushed {
            Ok(records) => self.send(records.unwrap_or_default(), sent),
            Err(e) => {
                self.report(&format!("emitting failed: {e}"));
                return false;
            }
        }
        for s in sent.drain(..) {
            let topic = &query.sink_spec.topic;
            if !deliver(
                self.cluster,
                &query.id,
                topic,
                &s.records,
                s.deliveries,
                self.stop,
            ) {
                return false;
            }
            self.stats
                .produced
                .fetch_add(s.records.len() as u64, Ordering::Relaxed);
        }
        let positions: Vec<(i32, i64)> = positions.iter().map(|(p, o)| (*p, *o)).collect();
        let changes = match query.pipeline.changes(&positions) {
            Ok(c) => c,
            Err(e) => {
                self.report(&format!("writing the state failed: {e}"));
                return false;
            }
        };
        let now = now_millis();
        let records: Vec<Record> = changes
            .into_iter()
            .map(|c| Record {
                key: Some(c.key),
                value: c.value,
                timestamp: now,
                partition: 0,
                offset: 0,
            })
            .collect();
        let deliveries = self.cluster.send(&self.changelog, &records).ok();
        if !deliver(
            self.cluster,
            &query.id,
            &self.changelog,
            &records,
            deliveries,
            self.stop,
        ) {
            return false;
        }
        // The checkpoint is what restores read; the group's offsets are for tools that watch lag.
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &positions {
            let _ = tpl.add_partition_offset(self.topic, *p, Offset::Offset(*o));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(query = %query.id, "offset commit failed: {e}");
        }
        true
    }

    fn report(&self, message: &str) {
        tracing::error!(query = %self.query.id, "{message}");
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(message.to_string());
    }
}
