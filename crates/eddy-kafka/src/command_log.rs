//! The command log: every successful DDL/DML statement appended to a single-partition topic,
//! replayed at start, so the catalog and persistent queries survive restarts, and followed while the
//! server runs, so every server of a service id runs what any of them was asked to (each entry names
//! the server that wrote it: the one that ran it already).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::{Result, exec_err};
use eddy_runtime::{Record, TopicAdmin};

use crate::client_settings::Role;
use crate::cluster::{InternalTopic, KafkaCluster, kafka_err, now_millis};

/// A single-partition topic of JSON command entries.
#[derive(Debug)]
pub struct CommandLog {
    cluster: Arc<KafkaCluster>,
    topic: String,
    /// This server, as the entries it writes name it.
    origin: String,
}

/// The field of an entry naming the server that wrote it.
const ORIGIN: &str = "origin";

impl CommandLog {
    /// Opens (creating if needed) the command topic of a service.
    pub fn open(cluster: Arc<KafkaCluster>, service_id: &str) -> Result<Self> {
        let topic = format!("_eddy-{service_id}_command_topic");
        if cluster.partitions(&topic)?.is_none() {
            cluster.create_internal_topic(&topic, InternalTopic::Server, 1, &[])?;
        }
        let origin = format!("{:016x}", cluster.instance());
        Ok(CommandLog {
            cluster,
            topic,
            origin,
        })
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Appends one entry (a JSON object), naming this server as its writer, and waits until it is
    /// durable.
    pub fn append(&self, entry: &serde_json::Value) -> Result<()> {
        let mut entry = entry.clone();
        if let Some(fields) = entry.as_object_mut() {
            fields.insert(ORIGIN.into(), self.origin.clone().into());
        }
        let record = Record {
            key: None,
            value: Some(serde_json::to_vec(&entry).map_err(|e| exec_err!("{e}"))?),
            timestamp: now_millis(),
            partition: 0,
            offset: -1,
            headers: Vec::new(),
        };
        self.cluster.produce_and_wait(&self.topic, &[record])
    }

    /// Reads every entry written so far, in order, and the offset after them.
    pub fn read_all(&self) -> Result<(Vec<serde_json::Value>, i64)> {
        self.read_from(0)
    }

    /// Reads the entries from offset `next` to the end, in order, and the offset after them.
    fn read_from(&self, next: i64) -> Result<(Vec<serde_json::Value>, i64)> {
        let mut out = Vec::new();
        let mut after = next;
        let from = BTreeMap::from([(0, next)]);
        self.cluster
            .read_from(&self.topic, &from, Duration::from_secs(60), None, |m| {
                after = after.max(m.offset() + 1);
                if let Some(v) = m.payload() {
                    match serde_json::from_slice(v) {
                        Ok(entry) => out.push(entry),
                        Err(e) => tracing::error!(
                            "skipping unreadable command at offset {}: {e}",
                            m.offset()
                        ),
                    }
                }
            })?;
        Ok((out, after))
    }

    /// A reader of the entries from offset `next` on, as they are written.
    pub fn follow(&self, next: i64) -> Result<Follower> {
        let consumer: BaseConsumer = self
            .cluster
            .client_config(Role::Consumer)
            .set("group.id", format!("{}-follower", self.topic))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_err)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(next))
            .map_err(kafka_err)?;
        consumer.assign(&tpl).map_err(kafka_err)?;
        Ok(Follower { consumer })
    }

    /// Whether this server wrote `entry` (and so has run it).
    pub fn is_own(&self, entry: &serde_json::Value) -> bool {
        entry.get(ORIGIN).and_then(serde_json::Value::as_str) == Some(self.origin.as_str())
    }
}

/// Reads the command log's entries as they are written.
pub struct Follower {
    consumer: BaseConsumer,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower").finish()
    }
}

impl Follower {
    /// The entries written since the last call, waiting up to `wait` for the first.
    pub fn poll(&self, wait: Duration) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut wait = wait;
        while let Some(message) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            match message {
                Ok(m) => match m.payload().map(serde_json::from_slice) {
                    Some(Ok(entry)) => out.push(entry),
                    Some(Err(e)) => {
                        tracing::error!("skipping unreadable command at offset {}: {e}", m.offset())
                    }
                    None => {}
                },
                Err(e) => {
                    tracing::warn!("reading the command log: {e}");
                    break;
                }
            }
        }
        out
    }
}
