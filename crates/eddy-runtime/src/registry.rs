//! Schema registries: where AVRO, PROTOBUF and JSON_SR schemas are registered under subjects
//! (`<topic>-key`, `<topic>-value`) and found again by the id each record carries.

use std::collections::{BTreeMap, HashMap};
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
    /// The kind a registry's `schemaType` names; absent means AVRO.
    pub fn from_name(name: Option<&str>) -> SchemaKind {
        match name {
            Some("PROTOBUF") => SchemaKind::Protobuf,
            Some("JSON") => SchemaKind::Json,
            _ => SchemaKind::Avro,
        }
    }

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

    /// Registers `schema` under `subject` with a chosen id (a registry in import mode).
    fn register_with_id(&self, subject: &str, schema: &RegisteredSchema, id: u32) -> Result<()> {
        let _ = (subject, schema);
        Err(Error::External(format!(
            "This schema registry cannot register a schema with a chosen id ({id})"
        )))
    }
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
    schemas: BTreeMap<u32, RegisteredSchema>,
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

impl Registered {
    fn add(&mut self, subject: &str, schema: &RegisteredSchema, id: u32) {
        self.schemas.insert(id, schema.clone());
        self.ids.entry(schema.clone()).or_insert(id);
        let versions = self.subjects.entry(subject.to_string()).or_default();
        if versions.last() != Some(&id) {
            versions.push(id);
        }
    }
}

impl SchemaRegistry for MemoryRegistry {
    fn register(&self, subject: &str, schema: &RegisteredSchema) -> Result<u32> {
        let mut r = self.inner.lock().map_err(|_| poisoned())?;
        let id = match r.ids.get(schema) {
            Some(id) => *id,
            None => r.schemas.keys().next_back().map_or(1, |last| last + 1),
        };
        r.add(subject, schema, id);
        Ok(id)
    }

    fn register_with_id(&self, subject: &str, schema: &RegisteredSchema, id: u32) -> Result<()> {
        let mut r = self.inner.lock().map_err(|_| poisoned())?;
        match r.schemas.get(&id) {
            Some(existing) if existing != schema => Err(Error::External(format!(
                "Schema id {id} is already taken by another schema"
            ))),
            _ => {
                r.add(subject, schema, id);
                Ok(())
            }
        }
    }

    fn latest(&self, subject: &str) -> Result<Option<(u32, RegisteredSchema)>> {
        let r = self.inner.lock().map_err(|_| poisoned())?;
        Ok(r.subjects
            .get(subject)
            .and_then(|v| v.last())
            .and_then(|id| Some((*id, r.schemas.get(id)?.clone()))))
    }

    fn by_id(&self, id: u32) -> Result<RegisteredSchema> {
        let r = self.inner.lock().map_err(|_| poisoned())?;
        r.schemas.get(&id).cloned().ok_or_else(|| {
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
        assert_eq!(r.latest("t-value").unwrap(), Some((2, b.clone())));
        assert_eq!(r.latest("v-value").unwrap(), None);
        assert_eq!(r.by_id(1).unwrap(), a);
        assert!(r.by_id(9).is_err());
        assert!(r.by_id(0).is_err());
        r.register_with_id("w-value", &a, 101).unwrap();
        assert_eq!(r.latest("w-value").unwrap(), Some((101, a.clone())));
        assert!(r.register_with_id("w-value", &b, 101).is_err(), "id taken");
        let c = RegisteredSchema {
            kind: SchemaKind::Avro,
            text: "\"string\"".into(),
        };
        assert_eq!(
            r.register("x-value", &c).unwrap(),
            102,
            "ids continue after the highest"
        );
    }
}
