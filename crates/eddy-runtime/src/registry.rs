//! Schema registries: where AVRO, PROTOBUF and JSON_SR schemas are registered under subjects
//! (`<topic>-key`, `<topic>-value`) and found again by the id each record carries.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use eddy_common::{Error, Result};

/// The language a registered schema is written in, as Confluent Schema Registry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    Avro,
    Protobuf,
    Json,
}

impl SchemaKind {
    /// The registry's name for it (`schemaType`).
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Avro => "AVRO",
            SchemaKind::Protobuf => "PROTOBUF",
            SchemaKind::Json => "JSON",
        }
    }
}

/// A schema as a registry holds it: its language and its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegisteredSchema {
    pub kind: SchemaKind,
    pub text: String,
}

/// A schema registry. Registering a schema a subject already has returns its id.
pub trait SchemaRegistry: Send + Sync + fmt::Debug {
    /// Registers `schema` under `subject`; the schema's id.
    fn register(&self, subject: &str, schema: &RegisteredSchema) -> Result<u32>;

    /// The latest schema of `subject` with its id, if the subject exists.
    fn latest(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>>;

    /// The schema with id `id`.
    fn by_id(&self, id: u32) -> Result<RegisteredSchema>;
}

/// The subject a topic's key or value schemas are registered under (Confluent's topic-name strategy).
pub fn subject(topic: &str, key: bool) -> String {
    format!("{topic}-{}", if key { "key" } else { "value" })
}

/// A registry held in memory: for tests, and for a server that was given no registry URL (its
/// schemas then live as long as the process).
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    inner: Mutex<Registered>,
}

#[derive(Debug, Default)]
struct Registered {
    /// Schemas by id - 1.
    schemas: Vec<RegisteredSchema>,
    ids: HashMap<RegisteredSchema, u32>,
    /// The ids registered under each subject, oldest first.
    subjects: HashMap<String, Vec<u32>>,
}

impl MemoryRegistry {
    /// An empty registry, shared.
    pub fn shared() -> Arc<dyn SchemaRegistry> {
        Arc::new(MemoryRegistry::default())
    }
}

impl SchemaRegistry for MemoryRegistry {
    fn register(&self, subject: &str, schema: &RegisteredSchema) -> Result<u32> {
        let mut r = self.inner.lock().map_err(|_| poisoned())?;
        let id = match r.ids.get(schema) {
            Some(id) => *id,
            None => {
                r.schemas.push(schema.clone());
                let id = r.schemas.len() as u32;
                r.ids.insert(schema.clone(), id);
                id
            }
        };
        let versions = r.subjects.entry(subject.to_string()).or_default();
        if versions.last() != Some(&id) {
            versions.push(id);
        }
        Ok(id)
    }

    fn latest(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>> {
        let r = self.inner.lock().map_err(|_| poisoned())?;
        Ok(r.subjects
            .get(subject)
            .and_then(|v| v.last())
            .map(|id| (*id, r.schemas[*id as usize - 1].clone())))
    }

    fn by_id(&self, id: u32) -> Result<RegisteredSchema> {
        let r = self.inner.lock().map_err(|_| poisoned())?;
        id.checked_sub(1)
            .and_then(|i| r.schemas.get(i as usize))
            .cloned()
            .ok_or_else(|| {
                Error::Execution(format!("Schema {id} not found in the schema registry"))
            })
    }
}

fn poisoned() -> Error {
    Error::Internal("the schema registry's lock is poisoned".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_get_one_id_each_and_subjects_keep_versions() {
        let r = MemoryRegistry::default();
        let a = RegisteredSchema {
            kind: SchemaKind::Avro,
            text: "\"int\"".into(),
        };
        let b = RegisteredSchema {
            kind: SchemaKind::Avro,
            text: "\"long\"".into(),
        };
        assert_eq!(r.register("t-value", &a).unwrap(), 1);
        assert_eq!(
            r.register("u-value", &a).unwrap(),
            1,
            "same schema, same id"
        );
        assert_eq!(r.register("t-value", &b).unwrap(), 2);
        assert_eq!(r.latest("t-value").unwrap(), Some((2, b)));
        assert_eq!(r.latest("v-value").unwrap(), None);
        assert_eq!(r.by_id(1).unwrap(), a);
        assert!(r.by_id(9).is_err());
        assert!(r.by_id(0).is_err());
    }
}
