//! `ARRAY[...]` (`make_array`) with ksqlDB's element typing: DataFusion's own refuses elements it
//! cannot unify before the planner's constructor pass (crate::constructors) has typed them, so this
//! one accepts them as they are; structs with different fields make an array of the struct with
//! all their fields (the missing ones NULL), and other mixed elements that reach it untyped are
//! an error naming both types.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StructArray, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::functions_nested::make_array::MakeArray;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature};

use crate::value_typing::{struct_union, type_name};

/// Registered as `make_array`, in place of DataFusion's.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct KsqlMakeArray {
    inner: MakeArray,
}

impl ScalarUDFImpl for KsqlMakeArray {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let element = struct_union(arg_types)
            .or_else(|| arg_types.iter().find(|t| !t.is_null()).cloned())
            .unwrap_or(DataType::Null);
        Ok(DataType::new_list(element, true))
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(self
            .inner
            .coerce_types(arg_types)
            .unwrap_or_else(|_| arg_types.to_vec()))
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::List(element) = args.return_field.data_type() else {
            return self.inner.invoke_with_args(args);
        };
        let element = element.data_type().clone();
        if args
            .args
            .iter()
            .all(|a| a.data_type() == element || a.data_type().is_null())
        {
            return self.inner.invoke_with_args(args);
        }
        let rows = args.number_rows;
        for (value, field) in args.args.iter_mut().zip(args.arg_fields.iter_mut()) {
            if value.data_type() == element || value.data_type().is_null() {
                continue;
            }
            let array = value.to_array(rows)?;
            *value = ColumnarValue::Array(conform(&array, &element)?);
            *field = Arc::new(field.as_ref().clone().with_data_type(element.clone()));
        }
        self.inner.invoke_with_args(args)
    }
}

/// A struct element as the array's struct: its fields by name, cast to the array's field types,
/// and NULL for the fields it lacks.
fn conform(array: &ArrayRef, element: &DataType) -> Result<ArrayRef> {
    let (DataType::Struct(to), Some(given)) =
        (element, array.as_any().downcast_ref::<StructArray>())
    else {
        return exec_err!(
            "Cannot construct an array of {} with {}",
            type_name(element),
            type_name(array.data_type())
        );
    };
    let columns = to
        .iter()
        .map(|f| match given.column_by_name(f.name()) {
            Some(c) => Ok(cast(c, f.data_type())?),
            None => Ok(new_null_array(f.data_type(), given.len())),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(Arc::new(StructArray::try_new(
        to.clone(),
        columns,
        given.nulls().cloned(),
    )?))
}
