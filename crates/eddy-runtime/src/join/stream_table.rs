//! Stream-table join: each stream record meets the row its key has in the table at that point; a
//! change of the table updates the table and emits nothing (Kafka Streams' `KStream#join(KTable)`).
//! It works a batch at a time: the table's rows stay in the columns they arrived in
//! ([`KeyedRows`]), and the stream's records are looked up and laid out beside them, never kept.

use std::collections::HashSet;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::Schema;

use eddy_common::Result;

use super::keyed_rows::{KeyedRows, Place};

/// The table side's rows by key; the stream is on the left.
#[derive(Debug)]
pub struct StreamTableJoin {
    /// LEFT JOIN: a stream record whose key the table lacks is emitted with NULLs.
    keep_unmatched: bool,
    table: KeyedRows,
}

impl StreamTableJoin {
    /// A join with an empty table of rows of `table`, of which it keeps the columns `used`.
    pub fn new(keep_unmatched: bool, table: &Schema, used: &HashSet<usize>) -> Self {
        StreamTableJoin {
            keep_unmatched,
            table: KeyedRows::new(table, used),
        }
    }

    /// Takes the table's records of a batch (`columns`): each `(key, row, present)` sets the key's
    /// row to `row`, or deletes the key when `present` is false.
    pub fn update<'a>(
        &mut self,
        columns: &[ArrayRef],
        records: impl Iterator<Item = (&'a [u8], usize, bool)>,
    ) -> Result<()> {
        self.table.apply(columns, records)
    }

    /// The stream records (`(row, key)`) that make a joined row, each with the table row it meets.
    pub fn lookup(&self, records: &[(usize, &[u8])]) -> Vec<(usize, Place)> {
        let keys: Vec<&[u8]> = records.iter().map(|(_, key)| *key).collect();
        records
            .iter()
            .zip(self.table.get_many(&keys))
            .filter_map(|((at, _), place)| match place {
                Some(place) => Some((*at, place)),
                None => self.keep_unmatched.then_some((*at, Place::NULLS)),
            })
            .collect()
    }

    /// The table rows at `places`, as columns.
    pub fn rows(&self, places: &[Place]) -> Result<Vec<ArrayRef>> {
        self.table.take(places)
    }
}
