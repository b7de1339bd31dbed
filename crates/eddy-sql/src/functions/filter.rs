//! ksqlDB's `FILTER`: over an array, `FILTER(a, x => ...)` keeps the elements the lambda holds true for
//! (DataFusion's `array_filter`); over a map, `FILTER(m, (k, v) => ...)` keeps those entries.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::compute::filter;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, plan_err};
use datafusion::functions_nested::array_filter::ArrayFilter;
use datafusion::logical_expr::{
    ColumnarValue, HigherOrderFunctionArgs, HigherOrderReturnFieldArgs, HigherOrderSignature,
    HigherOrderUDFImpl, LambdaParametersProgress, ValueOrLambda, Volatility,
};

use super::lambda_input::{Flattened, entry_fields, over_map, rebuild_map, split_args};

/// `FILTER` over arrays and maps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Filter {
    signature: HigherOrderSignature,
    array: ArrayFilter,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            signature: HigherOrderSignature::user_defined(Volatility::Immutable),
            array: ArrayFilter::new(),
        }
    }
}

impl HigherOrderUDFImpl for Filter {
    fn name(&self) -> &str {
        "filter"
    }

    fn signature(&self) -> &HigherOrderSignature {
        &self.signature
    }

    fn coerce_value_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [DataType::Map(..)] => Ok(types.to_vec()),
            _ => self.array.coerce_value_types(types),
        }
    }

    fn lambda_parameters(
        &self,
        step: usize,
        fields: &[ValueOrLambda<FieldRef, Option<FieldRef>>],
    ) -> Result<LambdaParametersProgress> {
        if !over_map(fields) {
            return self.array.lambda_parameters(step, fields);
        }
        let (values, _) = split_args(self.name(), fields, 1, 1)?;
        let entry = entry_fields(values[0].data_type()).unwrap_or_default();
        Ok(LambdaParametersProgress::Complete(vec![entry]))
    }

    fn return_field_from_args(&self, args: HigherOrderReturnFieldArgs) -> Result<FieldRef> {
        if !over_map(args.arg_fields) {
            return self.array.return_field_from_args(args);
        }
        let (values, lambdas) = split_args(self.name(), args.arg_fields, 1, 1)?;
        if lambdas[0].data_type() != &DataType::Boolean {
            return plan_err!(
                "The lambda of function 'filter' must return BOOLEAN, not {}.",
                lambdas[0].data_type()
            );
        }
        Ok(Arc::clone(values[0]))
    }

    fn invoke_with_args(&self, args: HigherOrderFunctionArgs) -> Result<ColumnarValue> {
        if !over_map(&args.arg_fields) {
            return self.array.invoke_with_args(args);
        }
        let (values, lambdas) = split_args(self.name(), &args.args, 1, 1)?;
        let flat = Flattened::of(values[0], args.number_rows)?;
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
        Ok(ColumnarValue::Array(rebuild_map(
            args.return_field.data_type(),
            filter(&flat.columns[0], &keep)?,
            filter(&flat.columns[1], &keep)?,
            &offsets,
            flat.nulls.as_ref(),
        )?))
    }
}
