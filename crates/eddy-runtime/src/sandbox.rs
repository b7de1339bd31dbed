//! A sandbox for validating a script before any of it runs: the cluster and the schema registry as
//! the engine's copy sees them, where what the script would create or delete is kept aside and
//! nothing is written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use eddy_common::Result;

use crate::admin::{TopicAdmin, TopicInfo};
use crate::record::Record;
use crate::registry::{RegisteredSchema, SchemaRegistry};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Topics as the cluster has them, with the creations and deletions of the statements validated
/// so far laid over them; records produced are dropped.
pub struct SandboxAdmin {
    cluster: Arc<dyn TopicAdmin>,
    /// Topics created (`Some`) or deleted (`None`) in the sandbox.
    changes: Mutex<BTreeMap<String, Option<TopicInfo>>>,
}

impl SandboxAdmin {
    pub fn over(cluster: Arc<dyn TopicAdmin>) -> Self {
        SandboxAdmin {
            cluster,
            changes: Mutex::default(),
        }
    }
}

impl TopicAdmin for SandboxAdmin {
    fn partitions(&self, topic: &str) -> Result<Option<i32>> {
        match lock(&self.changes).get(topic) {
            Some(change) => Ok(change.as_ref().map(|t| t.partitions)),
            None => self.cluster.partitions(topic),
        }
    }

    fn create_topic(&self, topic: &str, partitions: i32, replicas: i16) -> Result<()> {
        if self.partitions(topic)?.is_none() {
            let info = TopicInfo {
                name: topic.to_string(),
                partitions,
                replicas,
            };
            lock(&self.changes).insert(topic.to_string(), Some(info));
        }
        Ok(())
    }

    fn delete_topic(&self, topic: &str) -> Result<()> {
        lock(&self.changes).insert(topic.to_string(), None);
        Ok(())
    }

    fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let changes = lock(&self.changes);
        let mut topics: Vec<TopicInfo> = self
            .cluster
            .list_topics()?
            .into_iter()
            .filter(|t| !changes.contains_key(&t.name))
            .collect();
        topics.extend(changes.values().flatten().cloned());
        Ok(topics)
    }

    fn produce(&self, _topic: &str, _records: Vec<Record>) -> Result<()> {
        Ok(())
    }
}

/// Ids of schemas registered in a sandbox start here, clear of the registry's own.
const SANDBOX_IDS: u32 = 1 << 30;

/// The registry's schemas with those the sandbox registered laid over them.
#[derive(Debug)]
pub struct SandboxRegistry {
    registry: Arc<dyn SchemaRegistry>,
    /// (subject, schema, id), in the order registered.
    added: Mutex<Vec<(String, RegisteredSchema, u32)>>,
}

impl SandboxRegistry {
    pub fn over(registry: Arc<dyn SchemaRegistry>) -> Self {
        SandboxRegistry {
            registry,
            added: Mutex::default(),
        }
    }
}

impl SchemaRegistry for SandboxRegistry {
    fn register(&self, subject: &str, schema: &RegisteredSchema) -> Result<u32> {
        if let Some((id, latest)) = self.latest(subject)?
            && latest == *schema
        {
            return Ok(id);
        }
        let mut added = lock(&self.added);
        let id = SANDBOX_IDS + added.len() as u32;
        added.push((subject.to_string(), schema.clone(), id));
        Ok(id)
    }

    fn latest(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>> {
        let added = lock(&self.added);
        match added.iter().rev().find(|(s, _, _)| s == subject) {
            Some((_, schema, id)) => Ok(Some((*id, schema.clone()))),
            None => self.registry.latest(subject),
        }
    }

    fn by_id(&self, id: u32) -> Result<RegisteredSchema> {
        match lock(&self.added).iter().find(|(_, _, i)| *i == id) {
            Some((_, schema, _)) => Ok(schema.clone()),
            None => self.registry.by_id(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryTopics;
    use crate::registry::{MemoryRegistry, SchemaKind};

    #[test]
    fn topics_created_and_deleted_in_the_sandbox_stay_there() {
        let cluster = Arc::new(MemoryTopics::new());
        cluster.create_topic("kept", 2, 1).unwrap();
        let sandbox = SandboxAdmin::over(cluster.clone());
        sandbox.create_topic("new", 3, 1).unwrap();
        sandbox.delete_topic("kept").unwrap();
        assert_eq!(sandbox.partitions("new").unwrap(), Some(3));
        assert_eq!(sandbox.partitions("kept").unwrap(), None);
        let names: Vec<String> = sandbox
            .list_topics()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["new".to_string()]);
        assert_eq!(cluster.partitions("kept").unwrap(), Some(2));
        assert_eq!(cluster.partitions("new").unwrap(), None);
    }

    #[test]
    fn schemas_registered_in_the_sandbox_stay_there() {
        let registry = MemoryRegistry::shared();
        let schema = |text: &str| RegisteredSchema {
            kind: SchemaKind::Avro,
            text: text.to_string(),
        };
        let kept = registry.register("t-value", &schema("a")).unwrap();
        let sandbox = SandboxRegistry::over(registry.clone());
        assert_eq!(sandbox.register("t-value", &schema("a")).unwrap(), kept);
        let new = sandbox.register("t-value", &schema("b")).unwrap();
        assert_ne!(new, kept);
        assert_eq!(sandbox.latest("t-value").unwrap(), Some((new, schema("b"))));
        assert_eq!(sandbox.by_id(new).unwrap(), schema("b"));
        assert_eq!(
            registry.latest("t-value").unwrap(),
            Some((kept, schema("a")))
        );
    }
}
