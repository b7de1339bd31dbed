//! `ARRAY_REMOVE(array, value)` as ksqlDB has it: every element equal to the value goes (DataFusion's
//! `array_remove` takes the first only), and a NULL value removes the NULL elements.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{concat, filter, is_not_null};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, exec_err};
use datafusion::functions_nested::remove::ArrayRemoveAll;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// Registered as `array_remove`.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct ArrayRemove {
    inner: ArrayRemoveAll,
}

/// The function, for registration.
pub fn array_remove() -> ScalarUDF {
    ScalarUDF::from(ArrayRemove::default())
}

impl ScalarUDFImpl for ArrayRemove {
    fn name(&self) -> &str {
        "array_remove"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let lists = args.args[0].to_array(rows)?;
        let values = args.args[1].to_array(rows)?;
        let removed = self.inner.invoke_with_args(args)?;
        let removes_nulls = |i: usize| values.is_null(i) && lists.is_valid(i);
        if !(0..rows).any(removes_nulls) {
            return Ok(removed);
        }
        let (Some(lists), removed) = (lists.as_list_opt::<i32>(), removed.to_array(rows)?) else {
            return exec_err!("array_remove expects an ARRAY");
        };
        let removed = removed.as_list::<i32>();
        let rows_out = (0..rows)
            .map(|i| {
                if removes_nulls(i) {
                    let row = lists.value(i);
                    Ok(filter(&row, &is_not_null(&row)?)?)
                } else {
                    Ok(removed.value(i))
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let DataType::List(field) = removed.data_type() else {
            return exec_err!("array_remove returns an ARRAY");
        };
        let parts: Vec<&dyn Array> = rows_out.iter().map(|r| r.as_ref()).collect();
        let offsets = OffsetBuffer::from_lengths(rows_out.iter().map(|r| r.len()));
        let valid: NullBuffer = (0..rows)
            .map(|i| removes_nulls(i) || removed.is_valid(i))
            .collect();
        let list = ListArray::try_new(field.clone(), offsets, concat(&parts)?, Some(valid))?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}
