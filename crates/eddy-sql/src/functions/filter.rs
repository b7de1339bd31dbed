//! ksqlDB's `FILTER`: over an array, `FILTER(a, x => ...)` keeps the elements the lambda holds true for
//! (DataFusion's `array_filter`); over a map, `FILTER(m, (k, v) => ...)` keeps those entries.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, plan_err};
use datafusion::functions_nested::array_filter::ArrayFilter;
use datafusion::logical_expr::LambdaArgument;

use super::array_or_map::{ArrayOrMap, MapForm};
use super::lambda_input::{Flattened, rebuild_map};

/// `FILTER` over arrays and maps.
pub type Filter = ArrayOrMap<FilterMap>;

/// `FILTER` over a map.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterMap;

impl MapForm for FilterMap {
    type Array = ArrayFilter;
    const NAME: &'static str = "filter";
    const LAMBDAS: usize = 1;

    fn array() -> ArrayFilter {
        ArrayFilter::new()
    }

    fn return_field(map: &FieldRef, lambdas: &[&FieldRef]) -> Result<FieldRef> {
        if lambdas[0].data_type() != &DataType::Boolean {
            return plan_err!(
                "The lambda of function 'filter' must return BOOLEAN, not {}.",
                lambdas[0].data_type()
            );
        }
        Ok(Arc::clone(map))
    }

    fn invoke(
        flat: &Flattened,
        lambdas: &[&LambdaArgument],
        result: &DataType,
    ) -> Result<ArrayRef> {
        let verdicts = flat.evaluate(lambdas[0], &flat.columns)?;
        // A NULL verdict drops the entry, as a false one does.
        let keep: BooleanArray = verdicts
            .as_boolean()
            .iter()
            .map(|v| Some(v == Some(true)))
            .collect();
        let mut offsets = Vec::with_capacity(flat.offsets.len());
        offsets.push(0);
        let mut kept = 0;
        for pair in flat.offsets.windows(2) {
            kept += (pair[0]..pair[1]).filter(|i| keep.value(*i)).count();
            offsets.push(kept);
        }
        rebuild_map(
            result,
            filter(&flat.columns[0], &keep)?,
            filter(&flat.columns[1], &keep)?,
            &offsets,
            flat.nulls.as_ref(),
        )
    }
}
