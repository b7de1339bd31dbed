//! A table's current rows kept as the Arrow columns they arrived in, with an index from join key to
//! row: a lookup gives a row's place, and the rows a batch of lookups found are laid out in one
//! `interleave` per column, never parsed back row by row. A changed or deleted row stays in its
//! columns until they hold more stale rows than live ones (or emptied chunks pile up); then the live
//! rows are copied together.

use std::collections::HashSet;

use datafusion::arrow::array::{Array, ArrayRef, new_null_array};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, Schema};
use hashbrown::HashMap;

use eddy_common::{Result, exec_err};

use super::key_index::KeyIndex;

/// Where a row is: its columns (0 is a row of NULLs) and its row number in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    chunk: u32,
    row: u32,
}

impl Place {
    /// The row of NULLs, for a key the table does not have.
    pub const NULLS: Place = Place { chunk: 0, row: 0 };
}

/// Columns rows were kept from, and how many of their rows are still current.
#[derive(Debug)]
struct Chunk {
    columns: Vec<ArrayRef>,
    /// Its rows (also when no column is kept: they count towards compaction all the same).
    rows: usize,
    live: usize,
}

/// The current row of each key.
#[derive(Debug)]
pub struct KeyedRows {
    /// The type of each column, and whether it is kept.
    types: Vec<(DataType, bool)>,
    /// The kept columns of rows.
    chunks: Vec<Chunk>,
    /// Key (Arrow row bytes) to its row.
    index: KeyIndex<Place>,
    /// Rows the chunks hold, current or not.
    held: usize,
}

/// Stale rows kept at most, beyond as many as there are current rows, before the current rows are
/// copied together.
const SLACK: usize = 4096;

impl KeyedRows {
    /// An empty table of rows of `schema`, keeping the columns `used` only (the others are
    /// NULL).
    pub fn new(schema: &Schema, used: &HashSet<usize>) -> Self {
        let types: Vec<(DataType, bool)> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.data_type().clone(), used.contains(&i)))
            .collect();
        let nulls = types
            .iter()
            .filter(|(_, used)| *used)
            .map(|(t, _)| new_null_array(t, 1))
            .collect();
        KeyedRows {
            types,
            chunks: vec![Chunk {
                columns: nulls,
                rows: 1,
                live: 1,
            }],
            index: KeyIndex::default(),
            held: 1,
        }
    }

    /// Applies changes made by the rows of one batch (`columns`, all of them): each `(key, row,
    /// present)` makes row `row` the key's current row, or deletes the key when `present` is false.
    pub fn apply<'a>(
        &mut self,
        columns: &[ArrayRef],
        changes: impl Iterator<Item = (&'a [u8], usize, bool)>,
    ) -> Result<()> {
        let rows = columns.first().map_or(0, |c| c.len());
        let columns: Vec<ArrayRef> = columns
            .iter()
            .zip(&self.types)
            .filter(|(_, (_, used))| *used)
            .map(|(c, _)| c.clone())
            .collect();
        let chunk = u32::try_from(self.chunks.len())
            .map_err(|_| exec_err!("a table kept in {} chunks", self.chunks.len()))?;
        let mut live = 0;
        for (key, row, present) in changes {
            let old = match present {
                true => {
                    let row = u32::try_from(row).map_err(|_| exec_err!("a batch of {row} rows"))?;
                    live += 1;
                    self.index
                        .insert(self.index.hash(key), key, Place { chunk, row })
                }
                false => self.index.remove(self.index.hash(key), key),
            };
            if let Some(old) = old {
                if old.chunk == chunk {
                    live -= 1;
                } else {
                    let stale = &mut self.chunks[old.chunk as usize];
                    stale.live -= 1;
                    if stale.live == 0 {
                        // Nothing current is left in it: its rows go now.
                        self.held -= stale.rows;
                        stale.rows = 0;
                        stale.columns = Vec::new();
                    }
                }
            }
        }
        if live > 0 {
            self.held += rows;
            self.chunks.push(Chunk {
                columns,
                rows,
                live,
            });
        }
        // Chunks emptied of current rows still take a place each (chunk numbers stay fixed).
        let bound = 2 * self.index.len() + SLACK;
        if self.held > bound || self.chunks.len() > bound {
            self.compact()?;
        }
        Ok(())
    }

    /// The current rows of `keys`.
    pub fn get_many(&self, keys: &[&[u8]]) -> Vec<Option<Place>> {
        self.index.get_many(keys)
    }

    /// The rows at `places`, as columns (all of them).
    pub fn take(&self, places: &[Place]) -> Result<Vec<ArrayRef>> {
        let mut kept = self.take_kept(places)?.into_iter();
        self.types
            .iter()
            .map(|(data_type, used)| match used {
                true => kept
                    .next()
                    .ok_or_else(|| exec_err!("a table's rows lack a column")),
                false => Ok(new_null_array(data_type, places.len())),
            })
            .collect()
    }

    /// The kept columns of the rows at `places`.
    fn take_kept(&self, places: &[Place]) -> Result<Vec<ArrayRef>> {
        // Only the chunks the rows are in are interleaved: a table fed a record at a time keeps
        // many.
        let mut used: HashMap<u32, usize> = HashMap::new();
        let mut chunks: Vec<&Chunk> = Vec::new();
        let indices: Vec<(usize, usize)> = places
            .iter()
            .map(|p| {
                let at = *used.entry(p.chunk).or_insert_with(|| {
                    chunks.push(&self.chunks[p.chunk as usize]);
                    chunks.len() - 1
                });
                (at, p.row as usize)
            })
            .collect();
        let width = self.chunks[0].columns.len();
        (0..width)
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    chunks.iter().map(|k| k.columns[c].as_ref()).collect();
                match arrays.as_slice() {
                    [] => Ok(self.chunks[0].columns[c].slice(0, 0)),
                    arrays => interleave(arrays, &indices).map_err(|e| exec_err!("{e}")),
                }
            })
            .collect()
    }

    /// Copies the current rows into one chunk, leaving the stale ones behind.
    fn compact(&mut self) -> Result<()> {
        // Rows are copied in the index's order, which does not change until it is changed.
        let current: Vec<Place> = self.index.values().copied().collect();
        let columns = self.take_kept(&current)?;
        for (row, place) in self.index.values_mut().enumerate() {
            *place = Place {
                chunk: 1,
                row: u32::try_from(row).map_err(|_| exec_err!("a table of {row} rows"))?,
            };
        }
        self.chunks.truncate(1);
        self.chunks.push(Chunk {
            columns,
            rows: current.len(),
            live: current.len(),
        });
        self.held = 1 + current.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Int64Type};

    use super::*;

    /// Keys set and deleted a batch at a time (one-row batches and large ones, enough to be
    /// compacted several times) give back every key's latest row, and NULLs in the column not kept.
    #[test]
    fn latest_rows_across_compactions() {
        let schema = Schema::new(vec![
            Field::new("K", DataType::Utf8, true),
            Field::new("V", DataType::Int64, true),
            Field::new("SKIPPED", DataType::Int64, true),
        ]);
        let mut rows = KeyedRows::new(&schema, &HashSet::from([0, 1]));
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            state >> 33
        };
        for batch in 0..400 {
            let size = if batch % 3 == 0 { 1 } else { 100 };
            let keys: Vec<String> = (0..size).map(|_| format!("k{}", next() % 500)).collect();
            let values: Vec<i64> = (0..size).map(|_| next() as i64).collect();
            let present: Vec<bool> = (0..size).map(|_| next() % 5 != 0).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(keys.clone())),
                Arc::new(Int64Array::from(values.clone())),
                Arc::new(Int64Array::from(values.clone())),
            ];
            for i in 0..size {
                match present[i] {
                    true => expected.insert(keys[i].clone(), values[i]),
                    false => expected.remove(&keys[i]),
                };
            }
            let changes = (0..size).map(|i| (keys[i].as_bytes(), i, present[i]));
            rows.apply(&columns, changes).unwrap();
            assert!(rows.held <= 2 * rows.index.len() + SLACK + 100);
        }
        let keys: Vec<String> = (0..600).map(|n| format!("k{n}")).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let places: Vec<Place> = rows
            .get_many(&refs)
            .into_iter()
            .map(|p| p.unwrap_or(Place::NULLS))
            .collect();
        let columns = rows.take(&places).unwrap();
        let (names, values) = (
            columns[0].as_string::<i32>(),
            columns[1].as_primitive::<Int64Type>(),
        );
        for (i, key) in keys.iter().enumerate() {
            match expected.get(key) {
                Some(v) => {
                    assert_eq!(names.value(i), key);
                    assert_eq!(values.value(i), *v);
                }
                None => assert!(names.is_null(i) && values.is_null(i), "{key}"),
            }
        }
        assert_eq!(columns[2].null_count(), keys.len());
    }

    /// A table none of whose columns a query reads still lets go of its stale rows' chunks.
    #[test]
    fn chunks_stay_bounded_when_no_column_is_kept() {
        let schema = Schema::new(vec![Field::new("K", DataType::Utf8, true)]);
        let mut rows = KeyedRows::new(&schema, &HashSet::new());
        for n in 0..20_000 {
            let key = format!("k{}", n % 10);
            let columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![key.clone()]))];
            rows.apply(&columns, std::iter::once((key.as_bytes(), 0, true)))
                .unwrap();
        }
        assert!(
            rows.chunks.len() <= 2 * 10 + SLACK + 2,
            "{} chunks",
            rows.chunks.len()
        );
        let place = rows.get_many(&[b"k3".as_slice()])[0].unwrap();
        assert_eq!(rows.take(&[place]).unwrap()[0].null_count(), 1);
    }
}
