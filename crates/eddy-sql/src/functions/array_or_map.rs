//! A higher-order function over arrays or maps: DataFusion's array form when the first argument is an
//! array, and Eddy's map form (`MapForm`) when it is a map, under one ksqlDB name; anything else
//! is refused as ksqlDB refuses it.

use std::fmt::Debug;
use std::hash::Hash;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, HigherOrderFunctionArgs, HigherOrderReturnFieldArgs, HigherOrderSignature,
    HigherOrderUDFImpl, LambdaArgument, LambdaParametersProgress, ValueOrLambda, Volatility,
};

use super::lambda_input::{Flattened, entry_fields, over_map, split_args};
use super::refuse;

/// What a function does over a map: its lambdas each take the entry's key and value.
pub trait MapForm: Debug + Default + PartialEq + Eq + Hash + Send + Sync + 'static {
    /// DataFusion's function over arrays.
    type Array: HigherOrderUDFImpl + Debug + PartialEq + Eq + Hash;
    const NAME: &'static str;
    /// How many lambdas follow the map.
    const LAMBDAS: usize;

    fn array() -> Self::Array;

    /// The result's field, from the map's and the lambdas' results' fields.
    fn return_field(map: &FieldRef, lambdas: &[&FieldRef]) -> Result<FieldRef>;

    /// The result over the map's flattened entries.
    fn invoke(flat: &Flattened, lambdas: &[&LambdaArgument], result: &DataType)
    -> Result<ArrayRef>;
}

/// The function `M` names, over arrays and maps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayOrMap<M: MapForm> {
    signature: HigherOrderSignature,
    array: M::Array,
}

impl<M: MapForm> Default for ArrayOrMap<M> {
    fn default() -> Self {
        ArrayOrMap {
            signature: HigherOrderSignature::user_defined(Volatility::Immutable),
            array: M::array(),
        }
    }
}

impl<M: MapForm> HigherOrderUDFImpl for ArrayOrMap<M> {
    fn name(&self) -> &str {
        M::NAME
    }

    fn signature(&self) -> &HigherOrderSignature {
        &self.signature
    }

    fn coerce_value_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types.first() {
            Some(DataType::Map(..)) if types.len() == 1 => Ok(types.to_vec()),
            Some(
                DataType::List(_)
                | DataType::LargeList(_)
                | DataType::FixedSizeList(..)
                | DataType::Null,
            )
            | None => self.array.coerce_value_types(types),
            Some(_) => Err(refuse(M::NAME, types)),
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
        let (values, _) = split_args(M::NAME, fields, 1, M::LAMBDAS)?;
        let entry = entry_fields(values[0].data_type()).unwrap_or_default();
        Ok(LambdaParametersProgress::Complete(vec![entry; M::LAMBDAS]))
    }

    fn return_field_from_args(&self, args: HigherOrderReturnFieldArgs) -> Result<FieldRef> {
        if !over_map(args.arg_fields) {
            return self.array.return_field_from_args(args);
        }
        let (values, lambdas) = split_args(M::NAME, args.arg_fields, 1, M::LAMBDAS)?;
        M::return_field(values[0], &lambdas)
    }

    fn invoke_with_args(&self, args: HigherOrderFunctionArgs) -> Result<ColumnarValue> {
        if !over_map(&args.arg_fields) {
            return self.array.invoke_with_args(args);
        }
        let (values, lambdas) = split_args(M::NAME, &args.args, 1, M::LAMBDAS)?;
        let flat = Flattened::of(values[0], args.number_rows)?;
        Ok(ColumnarValue::Array(M::invoke(
            &flat,
            &lambdas,
            args.return_field.data_type(),
        )?))
    }
}
