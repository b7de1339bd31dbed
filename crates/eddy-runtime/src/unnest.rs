//! Table functions' rows: each input row is repeated once per element of its longest list (none for
//! NULL or empty lists), and each call's elements become a column appended to the input (NULL where
//! a call's list is shorter), as ksqlDB zips several table functions.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{Field, Schema};
use eddy_common::{Result, exec_err};

/// The rows unnested, and for each the input row it came from.
pub(crate) fn unnest(
    batch: &RecordBatch,
    lists: &[ArrayRef],
) -> Result<(RecordBatch, UInt32Array)> {
    let lists = lists
        .iter()
        .map(|l| {
            l.as_list_opt::<i32>().ok_or_else(|| {
                exec_err!(
                    "a table function returned {} rather than a list",
                    l.data_type()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut source = Vec::new();
    let mut elements: Vec<Vec<Option<u32>>> = vec![Vec::new(); lists.len()];
    for row in 0..batch.num_rows() {
        let lengths: Vec<usize> = lists
            .iter()
            .map(|l| {
                if l.is_valid(row) {
                    l.value_length(row) as usize
                } else {
                    0
                }
            })
            .collect();
        let n = lengths.iter().copied().max().unwrap_or(0);
        for j in 0..n {
            source.push(row as u32);
            for ((list, length), out) in lists.iter().zip(&lengths).zip(&mut elements) {
                out.push((j < *length).then(|| (list.value_offsets()[row] as usize + j) as u32));
            }
        }
    }
    let source = UInt32Array::from(source);
    let mut columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &source, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| exec_err!("{e}"))?;
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    for (i, (list, indices)) in lists.iter().zip(elements).enumerate() {
        let values = take(list.values().as_ref(), &UInt32Array::from(indices), None)
            .map_err(|e| exec_err!("{e}"))?;
        fields.push(Arc::new(Field::new(
            format!("KSQL_TABLE_FUNCTION_{i}"),
            values.data_type().clone(),
            true,
        )));
        columns.push(values);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| exec_err!("{e}"))?;
    Ok((batch, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, ListArray};
    use datafusion::arrow::datatypes::Int64Type;

    #[test]
    fn rows_repeat_per_element_of_the_longest_list() {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_from_iter([("ID", ids)]).unwrap();
        let a: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(10), Some(11)]),
            None,
            Some(vec![Some(30)]),
        ]));
        let b: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(100)]),
            Some(vec![]),
            Some(vec![Some(300), Some(301)]),
        ]));
        let (out, source) = unnest(&batch, &[a, b]).unwrap();
        assert_eq!(source.values().to_vec(), vec![0, 0, 2, 2]);
        let column = |i: usize| {
            out.column(i)
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(column(0), vec![Some(1), Some(1), Some(3), Some(3)]);
        assert_eq!(column(1), vec![Some(10), Some(11), Some(30), None]);
        assert_eq!(column(2), vec![Some(100), None, Some(300), Some(301)]);
    }
}
