//! `ARRAY_JOIN(array[, delimiter])` as ksqlDB has it: the elements as ksqlDB prints them (a NULL as
//! `null`) joined by the delimiter, `,` by default; a NULL delimiter joins with nothing.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{cast::cast_value, refuse, strings_of};

/// Registered as `array_join`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayJoin {
    signature: Signature,
}

impl Default for ArrayJoin {
    fn default() -> Self {
        ArrayJoin {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ArrayJoin {
    fn name(&self) -> &str {
        "array_join"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [DataType::List(_)] => Ok(types.to_vec()),
            [list @ DataType::List(_), DataType::Utf8 | DataType::Null] => {
                Ok(vec![list.clone(), DataType::Utf8])
            }
            _ => Err(refuse(self.name(), types)),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let lists = args.args[0].to_array(rows)?;
        let lists = lists.as_list::<i32>();
        let delimiters = args.args.get(1).map(|d| strings_of(d, rows)).transpose()?;
        // Every element as text, once for the whole batch.
        let texts = cast_value(lists.values(), &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let mut out = StringBuilder::new();
        let mut line = String::new();
        for row in 0..rows {
            if lists.is_null(row) {
                out.append_null();
                continue;
            }
            let delimiter = match &delimiters {
                None => ",",
                Some(d) if d.is_null(row) => "",
                Some(d) => d.value(row),
            };
            line.clear();
            let (start, end) = (lists.value_offsets()[row], lists.value_offsets()[row + 1]);
            for (n, i) in (start..end).enumerate() {
                if n > 0 {
                    line.push_str(delimiter);
                }
                let i = i as usize;
                line.push_str(if texts.is_null(i) {
                    "null"
                } else {
                    texts.value(i)
                });
            }
            out.append_value(&line);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
