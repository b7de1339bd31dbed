//! The PROTOBUF formats: PROTOBUF payloads are framed with a schema id and the message's indexes
//! and read with the writer's schema from the registry; PROTOBUF_NOSR payloads are bare messages of
//! the schema derived from the columns.

pub mod schema;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, ArrayRef};

use eddy_sql::SqlType;

use super::column::Cell;
use super::cursor::unzigzag;
use super::framing::{frame_header, unframe};
use super::limits::{Budget, MAX_DEPTH};
use crate::registry::{RegisteredSchema, SchemaKind, SchemaRegistry};
use schema::ProtoSchema;
use wire::{Wire, read_message_cells, write_message_arrays, write_varint};

/// Reads the message indexes Confluent's framing puts after the schema id: a count, then the path
/// (zig-zag varints); a count of 0 stands for `[0]`, the first message. The count is checked before
/// anything is allocated: each index takes at least a byte, and a path is no deeper than messages nest.
pub fn read_message_indexes(bytes: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    let mut w = Wire::new(bytes);
    let index = |v: u64| {
        usize::try_from(unzigzag(v))
            .map_err(|_| format!("Protobuf message index {} is negative", unzigzag(v)))
    };
    let count = index(w.varint()?)?;
    if count > w.remaining() || count > MAX_DEPTH {
        return Err(format!(
            "Protobuf framing announces {count} message indexes; at most {} fit",
            w.remaining().min(MAX_DEPTH)
        ));
    }
    let mut path = Vec::with_capacity(count.max(1));
    for _ in 0..count {
        path.push(index(w.varint()?)?);
    }
    if path.is_empty() {
        path.push(0);
    }
    let rest = bytes.len() - w.remaining();
    Ok((path, &bytes[rest..]))
}

/// Appends the message indexes of `path` (a single 0 for the first message).
pub fn write_message_indexes(path: &[usize], out: &mut Vec<u8>) {
    if path == [0] {
        out.push(0);
        return;
    }
    write_varint((path.len() as u64) << 1, out);
    for i in path {
        write_varint((*i as u64) << 1, out);
    }
}

/// A writer's message and the column each of its fields fills.
#[derive(Debug)]
struct Writer {
    schema: ProtoSchema,
    message: usize,
    targets: Vec<Option<usize>>,
}

impl Writer {
    fn new(schema: ProtoSchema, message: usize, names: &[String]) -> Self {
        let targets = schema.messages[message]
            .fields
            .iter()
            .map(|f| {
                names
                    .iter()
                    .position(|n| *n == f.name)
                    .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(&f.name)))
            })
            .collect();
        Writer {
            schema,
            message,
            targets,
        }
    }
}

/// Decodes protobuf payloads into the cells of a fixed list of columns (the message's fields).
#[derive(Debug, Clone)]
pub struct ProtobufDecoder {
    /// With a registry, writers' schemas are looked up by id; without, the columns' schema is used.
    registry: Option<Arc<dyn SchemaRegistry>>,
    names: Vec<String>,
    derived: Arc<Writer>,
    writers: WriterCache,
}

/// Writers' messages by schema id and message indexes.
type WriterCache = Arc<RwLock<HashMap<(u32, Vec<usize>), Arc<Writer>>>>;

impl ProtobufDecoder {
    /// A decoder of `columns`; framed payloads (PROTOBUF) when a registry is given.
    pub fn new(registry: Option<Arc<dyn SchemaRegistry>>, columns: &[(String, SqlType)]) -> Self {
        let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        let schema = ProtoSchema::for_columns(columns);
        let root = schema.top[0];
        ProtobufDecoder {
            registry,
            derived: Arc::new(Writer::new(schema, root, &names)),
            names,
            writers: Arc::default(),
        }
    }

    fn writer(
        &self,
        registry: &dyn SchemaRegistry,
        id: u32,
        path: Vec<usize>,
    ) -> Result<Arc<Writer>, String> {
        let key = (id, path);
        if let Some(w) = self.writers.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(w);
        }
        let registered = registry.by_id(id).map_err(|e| e.to_string())?;
        let schema = ProtoSchema::parse(&registered.text)?;
        let message = schema
            .message_at(&key.1)
            .ok_or_else(|| format!("Schema {id} has no message at indexes {:?}", key.1))?;
        let w = Arc::new(Writer::new(schema, message, &self.names));
        if let Ok(mut m) = self.writers.write() {
            m.insert(key, w.clone());
        }
        Ok(w)
    }

    /// Fills `out` (one cell per column) from a payload.
    pub fn decode<'a>(&self, bytes: &'a [u8], out: &mut [Cell<'a>]) -> Result<(), String> {
        let (writer, body) = match &self.registry {
            Some(registry) => {
                let (id, rest) = unframe(bytes)?;
                let (path, body) = read_message_indexes(rest)?;
                (self.writer(registry.as_ref(), id, path)?, body)
            }
            None => (self.derived.clone(), bytes),
        };
        let mut budget = Budget::new("Protobuf");
        read_message_cells(
            &writer.schema,
            writer.message,
            body,
            &writer.targets,
            out,
            &mut budget,
        )
    }
}

/// Encodes columns as the message ksqlDB derives for them; with a registry (PROTOBUF) the schema is
/// registered and payloads are framed.
#[derive(Debug, Clone)]
pub struct ProtobufEncoder {
    schema: ProtoSchema,
    id: Option<u32>,
}

impl ProtobufEncoder {
    /// An encoder of `columns`; registers their schema under `subject` when a registry is given.
    pub fn new(
        registry: Option<(&dyn SchemaRegistry, &str)>,
        columns: &[(String, SqlType)],
    ) -> eddy_common::Result<Self> {
        let schema = ProtoSchema::for_columns(columns);
        let id = match registry {
            Some((registry, subject)) => Some(registry.register(
                subject,
                &RegisteredSchema {
                    kind: SchemaKind::Protobuf,
                    text: schema.to_text(),
                },
            )?),
            None => None,
        };
        Ok(ProtobufEncoder { schema, id })
    }

    /// One payload per row.
    pub fn encode(&self, arrays: &[ArrayRef], rows: usize) -> Result<Vec<Option<Vec<u8>>>, String> {
        let columns: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut buf = match self.id {
                Some(id) => {
                    let mut b = frame_header(id);
                    write_message_indexes(&[0], &mut b);
                    b
                }
                None => Vec::with_capacity(64),
            };
            write_message_arrays(&self.schema, self.schema.top[0], &columns, row, &mut buf)?;
            out.push(Some(buf));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_indexes_round_trip() {
        for path in [vec![0], vec![1], vec![2, 0, 3]] {
            let mut b = Vec::new();
            write_message_indexes(&path, &mut b);
            b.push(0xAA);
            let (back, rest) = read_message_indexes(&b).unwrap();
            assert_eq!(back, path);
            assert_eq!(rest, &[0xAA]);
        }
    }

    #[test]
    fn hostile_message_index_counts_are_refused_before_allocating() {
        // A count of -1, a count of 2^39, more indexes than bytes, a negative index.
        for bytes in [
            &[0x01][..],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x20],
            &[0x08, 0x02],
            &[0x02, 0x03],
        ] {
            assert!(read_message_indexes(bytes).is_err(), "{bytes:?}");
        }
    }
}
