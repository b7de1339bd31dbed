//! Serialization formats: records of a source decoded into Arrow batches, and output batches encoded
//! back into records.

pub mod avro;
pub mod column;
pub mod cursor;
pub mod decode;
pub mod encode;
pub mod framing;
pub mod header_columns;
pub mod json_fast;
pub mod json_schema;
pub mod limits;
pub mod protobuf;
pub mod values;
pub mod window;

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Builder, Int64Array, Int64Builder, RecordBatch,
};
use datafusion::arrow::datatypes::SchemaRef;

use eddy_common::{Result, exec_err};
use eddy_sql::SqlType;
use eddy_sql::catalog::{Column, Format, PSEUDO_COLUMNS, Source};
use eddy_sql::java::chrono_format;
use eddy_sql::statement::ColumnRole;
use eddy_sql::window::KeyWindow;

use crate::record::RecordRef;
use crate::registry::{SchemaRegistry, subject};
use column::{Cell, ColumnBuilder};
use decode::PartDecoder;
use encode::PartEncoder;
use header_columns::HeaderColumns;
use json_fast::KeyCache;
use window::{Bounds, split_windowed_key};

/// A record that was skipped (it could not be decoded, or its time fits no window), with where it
/// came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub partition: i32,
    pub offset: i64,
    /// Why, cut to [`limits::MAX_MESSAGE`] bytes: messages may quote the record.
    pub message: String,
    pub kind: SkipKind,
}

/// Where a skipped record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// Its key or value could not be read.
    Deserialization,
    /// It was read but cannot be processed (no key for a table, a time no window fits, ...).
    Processing,
}

impl DecodeError {
    /// A record whose key or value could not be read.
    pub fn new(partition: i32, offset: i64, message: &str) -> Self {
        DecodeError {
            partition,
            offset,
            message: limits::cut(message).into_owned(),
            kind: SkipKind::Deserialization,
        }
    }

    /// A record that was read but cannot be processed.
    pub fn processing(partition: i32, offset: i64, message: &str) -> Self {
        DecodeError {
            kind: SkipKind::Processing,
            ..DecodeError::new(partition, offset, message)
        }
    }
}

/// Records decoded into a batch in the source's input schema.
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    pub batch: RecordBatch,
    /// Rows whose record had a null value (a tombstone): they pass through without their value.
    pub null_values: BooleanArray,
    /// Rows whose record had no key.
    pub null_keys: BooleanArray,
    /// Records that were skipped because they could not be decoded.
    pub errors: Vec<DecodeError>,
}

/// Decodes records of one source into Arrow batches (see [`Source::input_schema`]).
#[derive(Debug, Clone)]
pub struct SourceDecoder {
    schema: SchemaRef,
    key: PartDecoder,
    value: PartDecoder,
    types: Vec<SqlType>,
    /// Index (among key + value columns) of the column that gives ROWTIME.
    timestamp_column: Option<usize>,
    /// `TIMESTAMP_FORMAT` of a string timestamp column, as a chrono format.
    timestamp_format: Option<String>,
    /// How the keys are windowed: the window bounds are split off and become WINDOWSTART/WINDOWEND.
    window: Option<KeyWindow>,
    /// The columns read from the records' headers.
    headers: HeaderColumns,
}

fn part_columns(source: &Source, role: ColumnRole) -> Vec<(String, SqlType)> {
    source
        .columns
        .iter()
        .filter(|c| c.role == role)
        .map(|c| (c.name.clone(), c.sql_type.clone()))
        .collect()
}

impl SourceDecoder {
    /// A decoder for `source`'s key and value formats; schema-registry formats find the writers'
    /// schemas in `registry`.
    pub fn new(source: &Source, registry: &Arc<dyn SchemaRegistry>) -> Result<Self> {
        let keys = part_columns(source, ColumnRole::Key);
        let values = part_columns(source, ColumnRole::Value);
        let names: Vec<&String> = keys.iter().chain(&values).map(|(n, _)| n).collect();
        let types = keys.iter().chain(&values).map(|(_, t)| t.clone()).collect();
        let timestamp_column = source
            .timestamp_column
            .as_ref()
            .and_then(|t| names.iter().position(|n| *n == t));
        Ok(SourceDecoder {
            window: source.window,
            schema: source.input_schema(),
            key: PartDecoder::new(source.key_format, keys).with_registry(registry),
            value: PartDecoder::new(source.value_format, values).with_registry(registry),
            types,
            timestamp_column,
            timestamp_format: source.timestamp_format.as_deref().map(chrono_format),
            headers: HeaderColumns::new(source)?,
        })
    }

    /// Skips decoding the columns (indexes into the input schema) that nothing reads; they come out NULL.
    pub fn skip_unused(&mut self, used_inputs: &std::collections::HashSet<usize>) {
        let first = PSEUDO_COLUMNS;
        let keys = self.key.width();
        let mut used: Vec<bool> = (0..keys + self.value.width())
            .map(|i| used_inputs.contains(&(first + i)) || self.timestamp_column == Some(i))
            .collect();
        let values = used.split_off(keys);
        self.key.skip_unused(&used);
        self.value.skip_unused(&values);
    }

    /// Decodes a slice of records; undecodable ones are left out and reported.
    pub fn decode<R: RecordRef>(&self, records: &[R]) -> Result<DecodedBatch> {
        let n = records.len();
        let mut rowtime = Int64Builder::with_capacity(n);
        let mut partition = Int32Builder::with_capacity(n);
        let mut offset = Int64Builder::with_capacity(n);
        let mut builders: Vec<ColumnBuilder> = self
            .types
            .iter()
            .map(|t| ColumnBuilder::new(t, n))
            .collect();
        let mut null_values = Vec::with_capacity(n);
        let mut null_keys = Vec::with_capacity(n);
        let mut errors = Vec::new();
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(builders.len());
        let (mut key_cache, mut value_cache) = (KeyCache::default(), KeyCache::default());
        let key_width = self.key.width();
        let mut rows = 0;
        let mut headers = self.headers.builders(n);
        let (mut window_starts, mut window_ends) = match self.window {
            Some(_) => (Vec::with_capacity(n), Vec::with_capacity(n)),
            None => (Vec::new(), Vec::new()),
        };
        for r in records {
            let (keys, values) = builders.split_at_mut(key_width);
            let key = match (&self.window, r.key()) {
                (Some(w), Some(key)) => match split_windowed_key(key, w) {
                    Some((inner, bounds)) => Ok((Some(inner), Some(bounds))),
                    None => Err(format!(
                        "Error deserializing key: {} bytes are too few for a {} windowed key",
                        key.len(),
                        w.window_type.as_str()
                    )),
                },
                (_, key) => Ok((key, None)),
            };
            let decoded = key
                .and_then(|(key, bounds)| {
                    self.key
                        .decode_into(key, keys, &mut cells, &mut key_cache)
                        .map(|_| bounds)
                        .map_err(|e| format!("Error deserializing key: {e}"))
                })
                .map(|bounds| {
                    if self.window.is_some() {
                        let b = bounds.unwrap_or(Bounds { start: 0, end: 0 });
                        window_starts.push(b.start);
                        window_ends.push(b.end);
                    }
                })
                .and_then(|_| {
                    self.value
                        .decode_into(r.value(), values, &mut cells, &mut value_cache)
                        .map_err(|e| format!("Error deserializing value: {e}"))
                })
                .and_then(|_| match self.timestamp_column {
                    Some(i) if r.value().is_some() => {
                        builders[i].last_millis(self.timestamp_format.as_deref())
                    }
                    _ => Ok(r.timestamp()),
                })
                // As Kafka Streams does, a record whose time is negative is skipped.
                .and_then(|ts| match ts {
                    0.. => Ok(ts),
                    _ => Err(format!(
                        "Invalid timestamp {ts}: a record's time is milliseconds since 1970 and cannot be negative"
                    )),
                });
            match decoded {
                Ok(ts) => {
                    rowtime.append_value(ts);
                    partition.append_value(r.partition());
                    offset.append_value(r.offset());
                    null_values.push(r.value().is_none());
                    null_keys.push(r.key().is_none());
                    if !self.headers.is_empty() {
                        headers.append(r)?;
                    }
                    rows += 1;
                }
                Err(message) => {
                    builders.iter_mut().for_each(|b| b.truncate(rows));
                    window_starts.truncate(rows);
                    window_ends.truncate(rows);
                    errors.push(DecodeError::new(r.partition(), r.offset(), &message));
                }
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(rowtime.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
        ];
        for b in &mut builders {
            columns.push(b.finish().map_err(|e| exec_err!("{e}"))?);
        }
        columns.extend(headers.finish());
        if self.window.is_some() {
            columns.push(Arc::new(Int64Array::from(window_starts)));
            columns.push(Arc::new(Int64Array::from(window_ends)));
        }
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| exec_err!("{e}"))?;
        Ok(DecodedBatch {
            batch,
            null_values: BooleanArray::from(null_values),
            null_keys: BooleanArray::from(null_keys),
            errors,
        })
    }
}

/// The key and value bytes of one record (`None`: no key, or a tombstone).
pub type Payload = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Encodes output batches of a query into key and value payloads for a sink's formats.
#[derive(Debug, Clone)]
pub struct SinkEncoder {
    key: PartEncoder,
    value: PartEncoder,
    key_indices: Vec<usize>,
    value_indices: Vec<usize>,
}

impl SinkEncoder {
    /// An encoder of rows whose columns are `columns` (key ones and value ones) into the given formats.
    /// Schema-registry formats register their schemas for `topic` in `registry`.
    pub fn new(
        columns: &[Column],
        key_format: Format,
        value_format: Format,
        registry: &dyn SchemaRegistry,
        topic: &str,
    ) -> Result<Self> {
        let idx = |role: ColumnRole| -> Vec<usize> {
            columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.role == role)
                .map(|(i, _)| i)
                .collect()
        };
        let named = |ix: &[usize]| {
            ix.iter()
                .map(|i| (columns[*i].name.clone(), columns[*i].sql_type.clone()))
                .collect()
        };
        let key_indices = idx(ColumnRole::Key);
        let value_indices = idx(ColumnRole::Value);
        Ok(SinkEncoder {
            key: PartEncoder::new(key_format, named(&key_indices)).with_registry(
                registry,
                &subject(topic, true),
                true,
            )?,
            value: PartEncoder::new(value_format, named(&value_indices)).with_registry(
                registry,
                &subject(topic, false),
                false,
            )?,
            key_indices,
            value_indices,
        })
    }

    /// `(key, value)` payloads of every row; rows flagged in `null_values` get no value (a tombstone).
    /// A row has no key when its one key column is null, or when `null_keys` (rows whose key passes
    /// through from an input record without one) flags it.
    pub fn encode(
        &self,
        batch: &RecordBatch,
        null_values: Option<&BooleanArray>,
        null_keys: Option<&BooleanArray>,
    ) -> Result<Vec<Payload>> {
        let rows = batch.num_rows();
        let pick = |ix: &[usize]| {
            ix.iter()
                .map(|i| batch.column(*i).clone())
                .collect::<Vec<_>>()
        };
        let key_arrays = pick(&self.key_indices);
        let mut keys = self.key.encode(&key_arrays, rows)?;
        for (i, k) in keys.iter_mut().enumerate() {
            let single_null = matches!(key_arrays.as_slice(), [one] if one.is_null(i));
            if key_arrays.is_empty() || single_null || null_keys.is_some_and(|n| n.value(i)) {
                *k = None;
            }
        }
        let mut values = self.value.encode(&pick(&self.value_indices), rows)?;
        if let Some(nulls) = null_values {
            for (i, v) in values.iter_mut().enumerate() {
                if nulls.value(i) {
                    *v = None;
                }
            }
        }
        Ok(keys.into_iter().zip(values).collect())
    }
}
