//! The command log: every successful DDL/DML statement appended to a single-partition topic and
//! replayed at start, so the catalog and persistent queries survive restarts.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::Message;

use eddy_common::{Result, exec_err};
use eddy_runtime::{Record, TopicAdmin};

use crate::cluster::{InternalTopic, KafkaCluster, now_millis};

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
            cluster.create_internal_topic(&topic, InternalTopic::Server, 1, &[])?;
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
            timestamp: now_millis(),
            partition: 0,
            offset: -1,
        };
        self.cluster.produce_and_wait(&self.topic, &[record])
    }

    /// Reads every entry written so far, in order.
    pub fn read_all(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        self.cluster
            .read_to_end(&self.topic, None, Duration::from_secs(60), None, |m| {
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
        Ok(out)
    }
}
