//! How far a consumer group is behind: per partition of the topics it reads, the end offset less
//! the offset the group committed (partitions it has committed nothing for are left out: another
//! group, a query's repartition stage, may read them).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::Result;
use eddy_runtime::TopicAdmin;

use crate::client_settings::Role;
use crate::cluster::{KafkaCluster, kafka_err};

const TIMEOUT: Duration = Duration::from_secs(5);

/// One partition's lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Records after the group's committed offset.
    pub lag: i64,
}

/// The lag of consumer group `group` on `topics` (without joining the group).
pub fn consumer_lag(
    cluster: &KafkaCluster,
    group: &str,
    topics: &[String],
) -> Result<Vec<PartitionLag>> {
    let consumer: BaseConsumer = cluster
        .client_config(Role::Consumer)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka_err)?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for p in 0..cluster.partitions(topic)?.unwrap_or(0) {
            tpl.add_partition(topic, p);
        }
    }
    if tpl.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .map_err(kafka_err)?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let Offset::Offset(at) = e.offset() else {
            continue;
        };
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
            .map_err(kafka_err)?;
        out.push(PartitionLag {
            topic: e.topic().to_string(),
            partition: e.partition(),
            lag: (high - at).max(0),
        });
    }
    Ok(out)
}
