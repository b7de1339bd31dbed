//! ksqlDB's `TRANSFORM`: over an array, `TRANSFORM(a, x => ...)` maps each element (DataFusion's
//! `array_transform`); over a map, `TRANSFORM(m, (k, v) => key, (k, v) => value)` computes each
//! entry's new key and value (a row whose new keys include a NULL or a repeat is NULL).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::functions_nested::array_transform::ArrayTransform;
use datafusion::logical_expr::{
    ColumnarValue, HigherOrderFunctionArgs, HigherOrderReturnFieldArgs, HigherOrderSignature,
    HigherOrderUDFImpl, LambdaParametersProgress, ValueOrLambda, Volatility,
};

use super::lambda_input::{Flattened, entry_fields, map_type, over_map, rebuild_map, split_args};

/// `TRANSFORM` over arrays and maps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    signature: HigherOrderSignature,
    array: ArrayTransform,
}

impl Default for Transform {
    fn default() -> Self {
        Transform {
            signature: HigherOrderSignature::user_defined(Volatility::Immutable),
            array: ArrayTransform::new(),
        }
    }
}

impl HigherOrderUDFImpl for Transform {
    fn name(&self) -> &str {
        "transform"
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
        let (values, _) = split_args(self.name(), fields, 1, 2)?;
        let entry = entry_fields(values[0].data_type()).unwrap_or_default();
        Ok(LambdaParametersProgress::Complete(vec![
            entry.clone(),
            entry,
        ]))
    }

    fn return_field_from_args(&self, args: HigherOrderReturnFieldArgs) -> Result<FieldRef> {
        if !over_map(args.arg_fields) {
            return self.array.return_field_from_args(args);
        }
        let (values, lambdas) = split_args(self.name(), args.arg_fields, 1, 2)?;
        Ok(Arc::new(Field::new(
            "",
            map_type(lambdas[0].data_type(), lambdas[1].data_type()),
            values[0].is_nullable(),
        )))
    }

    fn invoke_with_args(&self, args: HigherOrderFunctionArgs) -> Result<ColumnarValue> {
        if !over_map(&args.arg_fields) {
            return self.array.invoke_with_args(args);
        }
        let (values, lambdas) = split_args(self.name(), &args.args, 1, 2)?;
        let flat = Flattened::of(values[0], args.number_rows)?;
        let keys = flat.evaluate(lambdas[0], &flat.columns)?;
        let values = flat.evaluate(lambdas[1], &flat.columns)?;
        Ok(ColumnarValue::Array(rebuild_map(
            args.return_field.data_type(),
            keys,
            values,
            &flat.offsets,
            flat.nulls.as_ref(),
        )?))
    }
}
