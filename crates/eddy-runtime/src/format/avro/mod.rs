//! The AVRO format: payloads framed with a schema id, decoded with the writer's schema from the
//! registry, encoded with the schema ksqlDB derives from the columns.

pub mod read;
pub mod schema;
pub mod write;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::ArrayRef;

use eddy_sql::SqlType;

use super::column::Cell;
use super::framing::{frame_header, unframe};
use crate::registry::{RegisteredSchema, SchemaKind, SchemaRegistry};
use read::{Reader, read_cell, skip};
use schema::AvroSchema;
use write::write_array;

/// Decodes Avro payloads into the cells of a fixed list of columns.
#[derive(Debug, Clone)]
pub struct AvroDecoder {
    registry: Arc<dyn SchemaRegistry>,
    names: Vec<String>,
    /// Whether the columns are fields of a record (otherwise the single column is the whole datum).
    wrap: bool,
    /// Writer schemas by id, with where each record field goes.
    writers: Arc<RwLock<HashMap<u32, Arc<Writer>>>>,
}

/// A writer's schema, and for a record the column each field fills.
#[derive(Debug)]
struct Writer {
    schema: AvroSchema,
    targets: Vec<Option<usize>>,
}

impl AvroDecoder {
    /// A decoder of `names` (columns in order); `wrap` when they are the fields of a record.
    pub fn new(registry: Arc<dyn SchemaRegistry>, names: Vec<String>, wrap: bool) -> Self {
        AvroDecoder {
            registry,
            names,
            wrap,
            writers: Arc::default(),
        }
    }

    fn writer(&self, id: u32) -> Result<Arc<Writer>, String> {
        if let Some(w) = self.writers.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(w);
        }
        let registered = self.registry.by_id(id).map_err(|e| e.to_string())?;
        let schema = AvroSchema::parse(&registered.text)?;
        let targets = match (&schema, self.wrap) {
            (AvroSchema::Record { fields, .. }, true) => fields
                .iter()
                .map(|f| {
                    self.names.iter().position(|n| *n == f.name).or_else(|| {
                        self.names
                            .iter()
                            .position(|n| n.eq_ignore_ascii_case(&f.name))
                    })
                })
                .collect(),
            (_, true) => {
                return Err(format!(
                    "Expected an Avro record of the columns, but the writer's schema is {}",
                    schema.to_json()
                ));
            }
            (_, false) => Vec::new(),
        };
        let w = Arc::new(Writer { schema, targets });
        if let Ok(mut m) = self.writers.write() {
            m.insert(id, w.clone());
        }
        Ok(w)
    }

    /// Fills `out` (one cell per column, all NULL on entry) from a framed payload; columns flagged
    /// `unused` are skipped.
    pub fn decode<'a>(
        &self,
        bytes: &'a [u8],
        unused: &[bool],
        out: &mut [Cell<'a>],
    ) -> Result<(), String> {
        let (id, body) = unframe(bytes)?;
        let writer = self.writer(id)?;
        let mut r = Reader::new(body);
        match &writer.schema {
            AvroSchema::Record { fields, .. } if self.wrap => {
                for (f, target) in fields.iter().zip(&writer.targets) {
                    match target {
                        Some(i) if !unused[*i] => out[*i] = read_cell(&mut r, &f.schema)?,
                        _ => skip(&mut r, &f.schema)?,
                    }
                }
            }
            schema => {
                if let Some(cell) = out.first_mut() {
                    *cell = read_cell(&mut r, schema)?;
                }
            }
        }
        if !r.is_done() {
            return Err("Avro data is longer than its schema".to_string());
        }
        Ok(())
    }
}

/// Encodes columns as Avro with the schema ksqlDB derives from them, registered under a subject.
#[derive(Debug, Clone)]
pub struct AvroEncoder {
    schema: AvroSchema,
    id: u32,
    /// Whether the columns are the fields of a record.
    wrapped: bool,
}

impl AvroEncoder {
    /// Registers the schema of `columns` under `subject`.
    pub fn new(
        registry: &dyn SchemaRegistry,
        subject: &str,
        columns: &[(String, SqlType)],
        wrap: bool,
        key: bool,
    ) -> eddy_common::Result<Self> {
        let schema = AvroSchema::for_columns(columns, wrap, key);
        let wrapped = wrap || columns.len() != 1;
        let id = registry.register(
            subject,
            &RegisteredSchema {
                kind: SchemaKind::Avro,
                text: schema.to_json().to_string(),
            },
        )?;
        Ok(AvroEncoder {
            schema,
            id,
            wrapped,
        })
    }

    /// One framed payload per row.
    pub fn encode(&self, arrays: &[ArrayRef], rows: usize) -> Result<Vec<Option<Vec<u8>>>, String> {
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if !self.wrapped && arrays[0].is_null(row) {
                // A null key or unwrapped value has no payload.
                out.push(None);
                continue;
            }
            let mut buf = frame_header(self.id);
            match &self.schema {
                AvroSchema::Record { fields, .. } if self.wrapped => {
                    for (f, a) in fields.iter().zip(arrays) {
                        write_array(a.as_ref(), row, &f.schema, &mut buf)
                            .map_err(|e| format!("column {}: {e}", f.name))?;
                    }
                }
                schema => write_array(arrays[0].as_ref(), row, schema, &mut buf)?,
            }
            out.push(Some(buf));
        }
        Ok(out)
    }
}
