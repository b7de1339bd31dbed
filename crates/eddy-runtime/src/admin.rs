//! The engine's view of the Kafka cluster: topic administration and single-record produce.

use eddy_common::Result;

use crate::record::Record;

/// A topic and its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: i32,
    pub replicas: i16,
}

/// Topic administration the engine needs while executing statements. Implemented over Kafka by
/// `eddy-kafka` and in memory by `MemoryTopics` (module `memory`).
pub trait TopicAdmin: Send + Sync {
    /// Partition count of a topic, `None` if it does not exist.
    fn partitions(&self, topic: &str) -> Result<Option<i32>>;
    /// Creates a topic if it does not exist.
    fn create_topic(&self, topic: &str, partitions: i32, replicas: i16) -> Result<()>;
    /// Deletes a topic.
    fn delete_topic(&self, topic: &str) -> Result<()>;
    /// All topics.
    fn list_topics(&self) -> Result<Vec<TopicInfo>>;
    /// Produces records (for `INSERT INTO ... VALUES`), waiting until they are written.
    fn produce(&self, topic: &str, records: Vec<Record>) -> Result<()>;
}
