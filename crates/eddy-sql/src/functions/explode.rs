//! `EXPLODE(array)`: ksqlDB's table function, one row per element. Typed as the elements, it returns
//! the array; the planner unnests table functions' lists into rows.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::types::SqlType;

pub fn explode() -> ScalarUDF {
    ScalarUDF::from(Explode {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Explode {
    signature: Signature,
}

impl ScalarUDFImpl for Explode {
    fn name(&self) -> &str {
        "explode"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::List(f) => Ok(f.data_type().clone()),
            other => {
                let given = SqlType::from_arrow(other)
                    .map(|t| t.plain_name())
                    .unwrap_or_else(|_| other.to_string());
                plan_err!(
                    "Function 'explode' does not accept parameters ({given}).\nValid alternatives are:\nexplode(ARRAY<DECIMAL> input)\nexplode(ARRAY<T> list)"
                )
            }
        }
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args.remove(0))
    }
}
