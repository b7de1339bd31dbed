//! The command log: every successful DDL/DML statement appended to a single-partition topic and
//! replayed at start, so the catalog and persistent queries survive restarts.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::{Result, exec_err};
use eddy_runtime::{Record, TopicAdmin};

use crate::cluster::{KafkaCluster, base_config, kafka_err};

/// A single-partition topic of JSON command entries.
#[derive(Debug)]
pub struct CommandLog {
    cluster: Arc<KafkaCluster>,
    topic: String,
}

impl CommandLog {
    /// Opens (creating if needed) the command topic of a service.
    pub fn open(cluster: Arc<KafkaCluster>, service_id: &str) -> Result<Self> {
        let topic = format!("_eddy-{service_id}_command_topic");
        if cluster.partitions(&topic)?.is_none() {
            cluster.create_topic(&topic, 1, 1)?;
        }
        Ok(CommandLog { cluster, topic })
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Appends one entry and waits until it is durable.
    pub fn append(&self, entry: &serde_json::Value) -> Result<()> {
        let record = Record {
            key: None,
            value: Some(serde_json::to_vec(entry).map_err(|e| exec_err!("{e}"))?),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            partition: 0,
            offset: -1,
        };
        self.cluster.produce_and_wait(&self.topic, &[record])
    }

    /// Reads every entry written so far, in order.
    pub fn read_all(&self) -> Result<Vec<serde_json::Value>> {
        let consumer: BaseConsumer = base_config(self.cluster.bootstrap())
            .set("group.id", format!("{}-reader", self.topic))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_err)?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, Duration::from_secs(10))
            .map_err(kafka_err)?;
        let mut out = Vec::new();
        if high <= low {
            return Ok(out);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(low))
            .map_err(kafka_err)?;
        consumer.assign(&tpl).map_err(kafka_err)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut next = low;
        while next < high {
            if std::time::Instant::now() > deadline {
                return Err(exec_err!(
                    "timed out reading the command topic {} ({next} of {high})",
                    self.topic
                ));
            }
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    if let Some(v) = m.payload() {
                        match serde_json::from_slice(v) {
                            Ok(entry) => out.push(entry),
                            Err(e) => tracing::error!(
                                "skipping unreadable command at offset {}: {e}",
                                m.offset()
                            ),
                        }
                    }
                }
                Some(Err(e)) => return Err(kafka_err(e)),
                None => {}
            }
        }
        Ok(out)
    }
}
