//! ksqlDB's `ARRAY_LENGTH(array) -> INT`: the number of elements, NULL for a NULL array (DataFusion's
//! `array_length` counts in BIGINT and takes a dimension).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::refuse;

pub fn array_length() -> ScalarUDF {
    ScalarUDF::from(ArrayLength {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayLength {
    signature: Signature,
}

impl ScalarUDFImpl for ArrayLength {
    fn name(&self) -> &str {
        "array_length"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [DataType::List(_)] => Ok(types.to_vec()),
            [DataType::Null] => Ok(vec![DataType::new_list(DataType::Null, true)]),
            _ => Err(refuse(self.name(), types)),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = args.args[0].to_array(args.number_rows)?;
        let lists = arrays.as_list::<i32>();
        let lengths: Int32Array = (0..lists.len())
            .map(|i| lists.is_valid(i).then(|| lists.value_length(i)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(lengths)))
    }
}
