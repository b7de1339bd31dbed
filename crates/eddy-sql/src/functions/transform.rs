//! ksqlDB's `TRANSFORM`: over an array, `TRANSFORM(a, x => ...)` maps each element (DataFusion's
//! `array_transform`); over a map, `TRANSFORM(m, (k, v) => key, (k, v) => value)` computes each
//! entry's new key and value (a row whose new keys include a NULL or a repeat is NULL).

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::functions_nested::array_transform::ArrayTransform;
use datafusion::logical_expr::LambdaArgument;

use super::array_or_map::{ArrayOrMap, MapForm};
use super::lambda_input::{Flattened, map_type, rebuild_map};

/// `TRANSFORM` over arrays and maps.
pub type Transform = ArrayOrMap<TransformMap>;

/// `TRANSFORM` over a map.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct TransformMap;

impl MapForm for TransformMap {
    type Array = ArrayTransform;
    const NAME: &'static str = "transform";
    const LAMBDAS: usize = 2;

    fn array() -> ArrayTransform {
        ArrayTransform::new()
    }

    fn return_field(map: &FieldRef, lambdas: &[&FieldRef]) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            "",
            map_type(lambdas[0].data_type(), lambdas[1].data_type()),
            map.is_nullable(),
        )))
    }

    fn invoke(
        flat: &Flattened,
        lambdas: &[&LambdaArgument],
        result: &DataType,
    ) -> Result<ArrayRef> {
        let keys = flat.evaluate(lambdas[0], &flat.columns)?;
        let values = flat.evaluate(lambdas[1], &flat.columns)?;
        rebuild_map(result, keys, values, &flat.offsets, flat.nulls.as_ref())
    }
}
