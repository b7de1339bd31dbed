//! A table created over a topic (`CREATE TABLE ... WITH (kafka_topic=...)`), kept in memory as its
//! latest record per key with an index by the key's values, so that a pull query looks keys up (or
//! reads the records it holds) instead of reading the whole topic — ksqlDB materializes such tables
//! from their own topic (the source-table optimization). A host feeds it the topic's records, in
//! order within each partition ([`TableStore::apply`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Int32Type, Int64Type};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use hashbrown::HashMap;

use eddy_common::{Result, exec_err};
use eddy_sql::catalog::{PSEUDO_COLUMNS, Source};

use crate::format::SourceDecoder;
use crate::record::Record;
use crate::registry::SchemaRegistry;

/// The latest record of each key of a table.
#[derive(Debug)]
pub struct TableStore {
    source: Arc<Source>,
    /// Decodes the key columns only.
    decoder: SourceDecoder,
    /// The key columns' values as row bytes, for the index.
    keys: RowConverter,
    key_count: usize,
    /// The latest record of each key (by its bytes, the order a scan gives rows in), with its key's
    /// values when they could be decoded.
    rows: BTreeMap<Vec<u8>, (Record, Option<OwnedRow>)>,
    /// Key values to key bytes.
    index: HashMap<OwnedRow, Vec<u8>>,
}

impl TableStore {
    /// An empty store for `source`, a table whose keys are not windowed.
    pub fn new(source: &Arc<Source>, registry: &Arc<dyn SchemaRegistry>) -> Result<Self> {
        let mut decoder = SourceDecoder::new(source, registry)?;
        let key_count = source.key_columns().count();
        decoder.skip_unused(&(PSEUDO_COLUMNS..PSEUDO_COLUMNS + key_count).collect());
        let keys = RowConverter::new(
            source
                .key_columns()
                .map(|c| SortField::new(c.sql_type.to_arrow()))
                .collect(),
        )
        .map_err(|e| exec_err!("{e}"))?;
        Ok(TableStore {
            source: source.clone(),
            decoder,
            keys,
            key_count,
            rows: BTreeMap::new(),
            index: HashMap::new(),
        })
    }

    /// The table the store holds.
    pub fn source(&self) -> &Arc<Source> {
        &self.source
    }

    /// How many keys have a row.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Takes the next records of the table's topic: each replaces its key's row, a tombstone deletes
    /// it. A record without a key is left out, as a table does; one whose key cannot be decoded is
    /// kept for scans (where it is reported as the topic's read would) but cannot be looked up.
    pub fn apply(&mut self, records: Vec<Record>) -> Result<()> {
        let decoded = self.decoder.decode(&records)?;
        let batch = &decoded.batch;
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        let key_columns: Vec<ArrayRef> =
            batch.columns()[PSEUDO_COLUMNS..PSEUDO_COLUMNS + self.key_count].to_vec();
        let converted = self
            .keys
            .convert_columns(&key_columns)
            .map_err(|e| exec_err!("{e}"))?;
        let mut values: HashMap<(i32, i64), OwnedRow> = HashMap::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if key_columns.iter().all(|c| c.is_valid(i)) {
                values.insert(
                    (partitions.value(i), offsets.value(i)),
                    converted.row(i).owned(),
                );
            }
        }
        for record in records {
            let Some(key) = record.key.clone() else {
                continue;
            };
            if let Some((_, Some(old))) = self.rows.remove(&key) {
                self.index.remove(&old);
            }
            if record.value.is_none() {
                continue;
            }
            let value = values.remove(&(record.partition, record.offset));
            if let Some(v) = &value {
                self.index.insert(v.clone(), key.clone());
            }
            self.rows.insert(key, (record, value));
        }
        Ok(())
    }

    /// The rows of the keys given (each a value per key column, cast to the column's type), in
    /// key-bytes order; keys without a row are left out.
    pub fn lookup(&self, keys: &[Vec<ScalarValue>]) -> Result<Vec<Record>> {
        let types: Vec<_> = self
            .source
            .key_columns()
            .map(|c| c.sql_type.to_arrow())
            .collect();
        let rows: Vec<Vec<ScalarValue>> = keys
            .iter()
            .filter(|row| row.len() == types.len())
            .filter_map(|row| {
                row.iter()
                    .zip(&types)
                    .map(|(v, t)| v.cast_to(t).ok())
                    .collect()
            })
            .collect();
        if rows.is_empty() || types.is_empty() {
            return Ok(Vec::new());
        }
        let columns: Vec<ArrayRef> = (0..types.len())
            .map(|i| ScalarValue::iter_to_array(rows.iter().map(|r| r[i].clone())))
            .collect::<datafusion::common::Result<_>>()
            .map_err(|e| exec_err!("{e}"))?;
        let converted = self
            .keys
            .convert_columns(&columns)
            .map_err(|e| exec_err!("{e}"))?;
        let mut found: BTreeMap<&[u8], &Record> = BTreeMap::new();
        for i in 0..rows.len() {
            if let Some(key) = self.index.get(&converted.row(i).owned())
                && let Some((record, _)) = self.rows.get(key)
            {
                found.insert(key, record);
            }
        }
        Ok(found.into_values().cloned().collect())
    }

    /// Every row, in key-bytes order.
    pub fn records(&self) -> Vec<Record> {
        self.rows.values().map(|(r, _)| r.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MemoryRegistry;

    fn record(key: &str, value: Option<&str>, offset: i64) -> Record {
        Record {
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            timestamp: offset,
            partition: 0,
            offset,
            headers: Vec::new(),
        }
    }

    fn cars() -> TableStore {
        let mut engine = crate::Engine::new(Arc::new(crate::MemoryTopics::new()));
        let sql = "CREATE TABLE cars (id STRING PRIMARY KEY, model STRING) WITH (kafka_topic='cars', key_format='KAFKA', value_format='JSON', partitions=1);";
        for stmt in eddy_sql::parse(sql).unwrap() {
            engine.execute(&stmt, &Default::default()).unwrap();
        }
        let source = engine.catalog().get("CARS").unwrap().clone();
        TableStore::new(&source, &MemoryRegistry::shared()).unwrap()
    }

    #[test]
    fn keeps_the_latest_row_of_each_key_and_forgets_deleted_ones() {
        let mut store = cars();
        store
            .apply(vec![
                record("a", Some(r#"{"MODEL":"m1"}"#), 0),
                record("b", Some(r#"{"MODEL":"m2"}"#), 1),
                record("a", Some(r#"{"MODEL":"m3"}"#), 2),
                record("c", Some(r#"{"MODEL":"m4"}"#), 3),
            ])
            .unwrap();
        store.apply(vec![record("b", None, 4)]).unwrap();
        assert_eq!(store.len(), 2);
        let key = |k: &str| vec![ScalarValue::Utf8(Some(k.to_string()))];
        let found = store.lookup(&[key("a"), key("b"), key("zz")]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].value.as_deref(), Some(&br#"{"MODEL":"m3"}"#[..]));
        let all: Vec<i64> = store.records().iter().map(|r| r.offset).collect();
        assert_eq!(all, vec![2, 3], "in key order, deleted keys left out");
        // A record without a key is not a row.
        let mut keyless = record("x", Some("{}"), 5);
        keyless.key = None;
        store.apply(vec![keyless]).unwrap();
        assert_eq!(store.len(), 2);
    }
}
