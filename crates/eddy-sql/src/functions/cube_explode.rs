//! `CUBE_EXPLODE(array)`: ksqlDB's table function giving every combination of the array's values and
//! NULLs, one row each: for `[1, 2]` the rows `[NULL, NULL]`, `[NULL, 2]`, `[1, NULL]`, `[1, 2]`. A NULL
//! element has one choice (a repeat would be a duplicate row). Typed as the array, it returns the list
//! of combinations, which the planner unnests into rows; an array of more than [`MAX_VALUES`] non-NULL
//! values (2^16 rows from one record), or whose combinations would hold more than [`MAX_OUTPUT`]
//! elements, gives no rows.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayBuilder, AsArray, ListArray, UInt32Builder};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::types::SqlType;

/// The most non-NULL values one array may have.
pub const MAX_VALUES: usize = 16;

/// The most elements the combinations of one array may hold (rows times the array's length).
pub const MAX_OUTPUT: usize = 1 << 20;

pub fn cube_explode() -> ScalarUDF {
    ScalarUDF::from(CubeExplode {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CubeExplode {
    signature: Signature,
}

impl ScalarUDFImpl for CubeExplode {
    fn name(&self) -> &str {
        "cube_explode"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            list @ DataType::List(_) => Ok(list.clone()),
            other => {
                let given = SqlType::from_arrow(other)
                    .map(|t| t.plain_name())
                    .unwrap_or_else(|_| other.to_string());
                plan_err!(
                    "Function 'cube_explode' does not accept parameters ({given}).\nValid alternatives are:\ncube_explode(ARRAY<T> list)"
                )
            }
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = args.args[0].to_array(args.number_rows)?;
        let lists = arrays.as_list::<i32>();
        let values = lists.values();
        // Per combination, the element each position takes (NULL: none).
        let mut picks = UInt32Builder::new();
        let mut inner = vec![0i32];
        let mut outer = vec![0i32];
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                let offsets = lists.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                // The mask bit of each position holding a value; the first is the most significant.
                let present = (start..end).filter(|i| values.is_valid(*i)).count();
                let rows = 1usize << present.min(MAX_VALUES);
                if present <= MAX_VALUES && rows.saturating_mul(end - start) <= MAX_OUTPUT {
                    let mut next = present;
                    let bits: Vec<Option<usize>> = (start..end)
                        .map(|i| {
                            values.is_valid(i).then(|| {
                                next -= 1;
                                next
                            })
                        })
                        .collect();
                    for mask in 0..rows {
                        for (i, bit) in (start..end).zip(&bits) {
                            let kept = bit.is_some_and(|b| mask >> b & 1 == 1);
                            picks.append_option(kept.then_some(i as u32));
                        }
                        let Ok(len) = i32::try_from(picks.len()) else {
                            return exec_err!(
                                "cube_explode: more than {} values in a batch",
                                i32::MAX
                            );
                        };
                        inner.push(len);
                    }
                }
            }
            outer.push((inner.len() - 1) as i32);
        }
        let DataType::List(item) = arrays.data_type() else {
            return exec_err!("cube_explode expects an array");
        };
        let combinations = ListArray::try_new(
            item.clone(),
            OffsetBuffer::new(inner.into()),
            take(values, &picks.finish(), None)?,
            None,
        )?;
        let field = Arc::new(Field::new("item", arrays.data_type().clone(), true));
        Ok(ColumnarValue::Array(Arc::new(ListArray::try_new(
            field,
            OffsetBuffer::new(outer.into()),
            Arc::new(combinations),
            lists.nulls().cloned(),
        )?)))
    }
}
