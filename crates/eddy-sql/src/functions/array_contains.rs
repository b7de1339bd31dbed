//! `ARRAY_CONTAINS(array, value)` as ksqlDB has it: never NULL — false for a NULL array, and a NULL
//! value is found where the array holds a NULL; otherwise DataFusion's `array_has`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, GenericListArray, OffsetSizeTrait};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::functions_nested::array_has::ArrayHas;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// Registered as `array_contains`.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct ArrayContains {
    inner: ArrayHas,
}

/// The function, for registration.
pub fn array_contains() -> ScalarUDF {
    ScalarUDF::from(ArrayContains::default())
}

impl ScalarUDFImpl for ArrayContains {
    fn name(&self) -> &str {
        "array_contains"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args.args[0].to_array(rows)?;
        let values = args.args[1].to_array(rows)?;
        let found = self.inner.invoke_with_args(args)?.to_array(rows)?;
        let found = found.as_boolean();
        let holds_null = |i: usize| match arrays.data_type() {
            DataType::List(_) => has_null(arrays.as_list::<i32>(), i),
            DataType::LargeList(_) => has_null(arrays.as_list::<i64>(), i),
            _ => false,
        };
        let out: BooleanArray = (0..rows)
            .map(|i| {
                Some(if arrays.is_null(i) {
                    false
                } else if values.is_null(i) {
                    holds_null(i)
                } else {
                    found.is_valid(i) && found.value(i)
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

fn has_null<O: OffsetSizeTrait>(list: &GenericListArray<O>, i: usize) -> bool {
    list.value(i).null_count() > 0
}
