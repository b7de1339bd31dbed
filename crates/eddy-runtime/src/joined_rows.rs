//! The rows a query's joins make, as the query's internal topic carries them to the aggregation
//! over them (see `Pipeline::split_joins`). A record holds the rows that one input record made and
//! that go to one partition, in a layout of Eddy's own: a version byte, the row count (u32), then
//! each row as a u32 length and its values in `state_row`'s encoding (every column of the joined
//! input, in order). A record is read whole or skipped: counts and lengths are checked against the
//! bytes left before anything is allocated.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use eddy_common::{Result, exec_err};

use crate::format::{DecodeError, DecodedBatch};
use crate::layout::Reader;
use crate::record::RecordRef;

/// The layout version of a record of joined rows.
const VERSION: u8 = 1;
/// What the errors of this layout call it.
const WHAT: &str = "a record of joined rows";
/// Bytes a row takes besides its values: its length.
const ROW_HEADER: usize = 4;

/// Encodes rows `rows` of `columns` (the joined input's, in order) as one record's value.
pub fn encode(columns: &[ArrayRef], rows: &[usize]) -> Result<Vec<u8>> {
    let count = u32::try_from(rows.len()).map_err(|_| exec_err!("too many rows in one record"))?;
    let mut out = Vec::with_capacity(5 + rows.len() * 32);
    out.push(VERSION);
    out.extend_from_slice(&count.to_be_bytes());
    for &row in rows {
        let at = out.len();
        out.extend_from_slice(&[0; ROW_HEADER]);
        crate::state_row::encode(columns, row, &mut out)?;
        let len = u32::try_from(out.len() - at - ROW_HEADER)
            .map_err(|_| exec_err!("a joined row too large for a record"))?;
        out[at..at + ROW_HEADER].copy_from_slice(&len.to_be_bytes());
    }
    Ok(out)
}

/// The encoded rows of a record written by [`encode`].
pub fn split(payload: &[u8]) -> Result<Vec<&[u8]>> {
    let mut r = Reader::new(payload, VERSION, WHAT)?;
    let count = r.u32()? as usize;
    // Every row takes at least its length: a count past what is left is a damaged record.
    if count > r.rest().len() / ROW_HEADER {
        return Err(exec_err!("{WHAT} counts more rows than it holds"));
    }
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32()? as usize;
        rows.push(r.take(len)?);
    }
    if !r.is_done() {
        return Err(exec_err!("{WHAT} has bytes after its last row"));
    }
    Ok(rows)
}

/// Reads records of joined rows back into batches of the joined input's schema.
#[derive(Debug, Clone)]
pub struct JoinedRows {
    schema: SchemaRef,
    types: Vec<DataType>,
}

impl JoinedRows {
    /// A reader of rows of `schema` (ROWTIME, ROWPARTITION, ROWOFFSET first).
    pub fn new(schema: SchemaRef) -> Self {
        let types = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        JoinedRows { schema, types }
    }

    /// The rows `records` hold, each row's ROWPARTITION and ROWOFFSET those of its record (the
    /// positions a state's checkpoint counts in); a record that cannot be read is skipped and
    /// reported. The rows of every record are read together, a column at a time; when that fails,
    /// record by record, to find the ones at fault.
    pub fn decode<R: RecordRef>(&self, records: &[R]) -> Result<DecodedBatch> {
        let mut rows = Vec::new();
        let (mut partitions, mut offsets) = (Vec::new(), Vec::new());
        let mut errors = Vec::new();
        for r in records {
            let Some(value) = r.value() else { continue };
            match split(value) {
                Ok(split) => {
                    partitions.extend(std::iter::repeat_n(r.partition(), split.len()));
                    offsets.extend(std::iter::repeat_n(r.offset(), split.len()));
                    rows.extend(split);
                }
                Err(e) => errors.push(DecodeError::new(r.partition(), r.offset(), &e.to_string())),
            }
        }
        let together = crate::state_row::decode(&self.types, &rows).and_then(|mut columns| {
            columns[1] = Arc::new(Int32Array::from(partitions));
            columns[2] = Arc::new(Int64Array::from(offsets));
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| exec_err!("{e}"))
        });
        let batch = match together {
            Ok(batch) => batch,
            Err(_) => {
                errors.clear();
                let mut parts = Vec::new();
                for r in records {
                    match self.record(r) {
                        Ok(Some(batch)) => parts.push(batch),
                        Ok(None) => {}
                        Err(e) => {
                            errors.push(DecodeError::new(r.partition(), r.offset(), &e.to_string()))
                        }
                    }
                }
                datafusion::arrow::compute::concat_batches(&self.schema, &parts)
                    .map_err(|e| exec_err!("{e}"))?
            }
        };
        let none = BooleanArray::from(vec![false; batch.num_rows()]);
        Ok(DecodedBatch {
            batch,
            null_values: none.clone(),
            null_keys: none,
            errors,
        })
    }

    /// The rows of one record (`None` for a record without a value).
    fn record<R: RecordRef>(&self, r: &R) -> Result<Option<RecordBatch>> {
        let Some(value) = r.value() else {
            return Ok(None);
        };
        let rows = split(value)?;
        let mut columns = crate::state_row::decode(&self.types, &rows)?;
        columns[1] = Arc::new(Int32Array::from(vec![r.partition(); rows.len()]));
        columns[2] = Arc::new(Int64Array::from(vec![r.offset(); rows.len()]));
        // A NULL where the schema allows none (a record not written by Eddy) is refused here.
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| exec_err!("{WHAT} does not fit the joined rows: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    use datafusion::arrow::datatypes::{Field, Int64Type, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ROWTIME", DataType::Int64, false),
            Field::new("ROWPARTITION", DataType::Int32, false),
            Field::new("ROWOFFSET", DataType::Int64, false),
            Field::new("L_NAME", DataType::Utf8, true),
        ]))
    }

    fn record(value: Option<Vec<u8>>, offset: i64) -> Record {
        Record {
            key: None,
            value,
            timestamp: 0,
            partition: 2,
            offset,
            headers: Vec::new(),
        }
    }

    #[test]
    fn rows_come_back_with_their_record_s_position() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![10, 20, 30])),
            Arc::new(Int32Array::from(vec![0, 0, 1])),
            Arc::new(Int64Array::from(vec![5, 5, 9])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
        ];
        let first = encode(&columns, &[0, 2]).unwrap();
        let second = encode(&columns, &[1]).unwrap();
        let reader = JoinedRows::new(schema());
        let decoded = reader
            .decode(&[record(Some(first), 7), record(Some(second), 8)])
            .unwrap();
        let b = &decoded.batch;
        assert!(decoded.errors.is_empty());
        assert_eq!(b.num_rows(), 3);
        assert_eq!(
            b.column(0).as_primitive::<Int64Type>().values(),
            &[10, 30, 20]
        );
        assert_eq!(b.column(2).as_primitive::<Int64Type>().values(), &[7, 7, 8]);
        assert_eq!(
            b.column(1)
                .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                .values(),
            &[2, 2, 2]
        );
        let names = b.column(3).as_string::<i32>();
        assert_eq!((names.value(0), names.value(1)), ("a", "c"));
        assert!(names.is_null(2));
    }

    #[test]
    fn a_damaged_record_is_skipped_and_reported_alone() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![10])),
            Arc::new(Int32Array::from(vec![0])),
            Arc::new(Int64Array::from(vec![5])),
            Arc::new(StringArray::from(vec![Some("a")])),
        ];
        let good = encode(&columns, &[0]).unwrap();
        // A count of rows the bytes cannot hold, a length past the end, a row cut short, bytes
        // after the last row, a NULL ROWTIME, another version.
        let mut null_time = vec![VERSION, 0, 0, 0, 1, 0, 0, 0, 0];
        let mut row = vec![
            crate::state_row::VERSION,
            0,
            1,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            1,
            0,
        ];
        null_time[5..9].copy_from_slice(&(row.len() as u32).to_be_bytes());
        null_time.append(&mut row);
        let bad: Vec<Vec<u8>> = vec![
            vec![VERSION, 0xff, 0xff, 0xff, 0xff],
            vec![VERSION, 0, 0, 0, 1, 0, 0, 1, 0],
            good[..good.len() - 2].to_vec(),
            [good.clone(), vec![0]].concat(),
            null_time,
            [vec![9], good[1..].to_vec()].concat(),
        ];
        let mut records = vec![record(Some(good.clone()), 0)];
        records.extend(bad.iter().zip(1..).map(|(b, o)| record(Some(b.clone()), o)));
        records.push(record(None, 99));
        let decoded = JoinedRows::new(schema()).decode(&records).unwrap();
        assert_eq!(decoded.batch.num_rows(), 1);
        let skipped: Vec<i64> = decoded.errors.iter().map(|e| e.offset).collect();
        assert_eq!(skipped, (1..=bad.len() as i64).collect::<Vec<_>>());
    }
}
