//! `AS_VALUE(x)`: returns its argument; ksqlDB uses it to copy a key column into the value.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// A function that returns its one argument unchanged, under a ksqlDB name.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    name: &'static str,
    signature: Signature,
}

impl Identity {
    pub fn new(name: &'static str) -> Self {
        Identity {
            name,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Identity {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args.remove(0))
    }
}
