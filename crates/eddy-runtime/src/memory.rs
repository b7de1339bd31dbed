//! In-memory topics behind the [`TopicAdmin`] trait: deterministic storage for golden tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;

use eddy_common::{Result, plan_err};

use crate::admin::{TopicAdmin, TopicInfo};
use crate::record::Record;

/// Topics held in memory: partitions of records, offsets assigned on append.
#[derive(Debug, Default)]
pub struct MemoryTopics {
    topics: Mutex<BTreeMap<String, Topic>>,
}

#[derive(Debug, Default, Clone)]
struct Topic {
    partitions: Vec<Vec<Record>>,
    /// The replication factor it was created with (kept to be listed; memory has one copy).
    replicas: i16,
    /// `(partition, index)` of every record in append order.
    appended: Vec<(usize, usize)>,
}

impl Topic {
    fn with_partitions(n: usize, replicas: i16) -> Self {
        Topic {
            partitions: vec![Vec::new(); n.max(1)],
            replicas,
            appended: Vec::new(),
        }
    }
}

impl MemoryTopics {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends records to the partitions they name (creating the topic with one partition if missing).
    pub fn append(&self, topic: &str, records: impl IntoIterator<Item = Record>) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let t = topics
            .entry(topic.to_string())
            .or_insert_with(|| Topic::with_partitions(1, 1));
        for mut r in records {
            let p = r.partition.clamp(0, t.partitions.len() as i32 - 1) as usize;
            r.partition = p as i32;
            r.offset = t.partitions[p].len() as i64;
            t.appended.push((p, t.partitions[p].len()));
            t.partitions[p].push(r);
        }
    }

    /// All records of a topic in the order they were appended.
    pub fn records(&self, topic: &str) -> Vec<Record> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .get(topic)
            .map(|t| {
                t.appended
                    .iter()
                    .map(|(p, i)| t.partitions[*p][*i].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a topic exists.
    pub fn exists(&self, topic: &str) -> bool {
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(topic)
    }
}

impl TopicAdmin for MemoryTopics {
    fn partitions(&self, topic: &str) -> Result<Option<i32>> {
        Ok(self
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .map(|t| t.partitions.len() as i32))
    }

    fn create_topic(&self, topic: &str, partitions: i32, replicas: i16) -> Result<()> {
        if partitions < 1 {
            return Err(plan_err!(
                "Invalid partition count {partitions} for topic {topic}"
            ));
        }
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.to_string())
            .or_insert_with(|| Topic::with_partitions(partitions as usize, replicas));
        Ok(())
    }

    fn delete_topic(&self, topic: &str) -> Result<()> {
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(topic);
        Ok(())
    }

    fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        Ok(self
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, t)| TopicInfo {
                name: name.clone(),
                partitions: t.partitions.len() as i32,
                replicas: t.replicas,
            })
            .collect())
    }

    fn produce(&self, topic: &str, records: Vec<Record>) -> Result<()> {
        self.append(topic, records);
        Ok(())
    }
}
