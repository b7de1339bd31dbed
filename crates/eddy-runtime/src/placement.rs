//! Where the records of a repartitioned input go: the partition Kafka's default partitioner gives the
//! bytes computed for each record's decoded row (its GROUP BY values, its join value as a key),
//! found back through the row's partition and offset; a record that was not decoded stays in
//! partition 0, where the query reports or leaves it out as it would anyway.

use std::collections::HashMap;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int32Type, Int64Type};

use crate::partitioner::partition_for;
use crate::record::RecordRef;

/// The partitions of a batch of records, filled in row by row of its decoded batch.
pub(crate) struct Placement {
    partitions: i32,
    out: Vec<i32>,
    /// Where each record is in the batch, by its partition and offset.
    at: HashMap<(i32, i64), usize>,
}

impl Placement {
    /// Every record of `records` in partition 0 (of `partitions`) until placed.
    pub(crate) fn new<R: RecordRef>(records: &[R], partitions: i32) -> Self {
        Placement {
            partitions,
            out: vec![0; records.len()],
            at: records
                .iter()
                .enumerate()
                .map(|(i, r)| ((r.partition(), r.offset()), i))
                .collect(),
        }
    }

    /// Places the record row `row` of `decoded` (a decoded batch: ROWTIME, ROWPARTITION, ROWOFFSET
    /// first) came from in `partition`.
    pub(crate) fn place(&mut self, decoded: &RecordBatch, row: usize, partition: i32) {
        let origin = (partition_at(decoded, row), offset_at(decoded, row));
        if let Some(i) = self.at.get(&origin) {
            self.out[*i] = partition;
        }
    }

    /// Places the record row `row` of `decoded` came from where `bytes` hash to.
    pub(crate) fn place_bytes(&mut self, decoded: &RecordBatch, row: usize, bytes: &[u8]) {
        self.place(decoded, row, partition_for(bytes, self.partitions));
    }

    /// Each record's partition, in the order of the records.
    pub(crate) fn finish(self) -> Vec<i32> {
        self.out
    }
}

/// The partition a decoded row's record was read from.
pub(crate) fn partition_at(decoded: &RecordBatch, row: usize) -> i32 {
    decoded.column(1).as_primitive::<Int32Type>().value(row)
}

/// The offset a decoded row's record was read at.
pub(crate) fn offset_at(decoded: &RecordBatch, row: usize) -> i64 {
    decoded.column(2).as_primitive::<Int64Type>().value(row)
}
