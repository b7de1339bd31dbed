//! ksqlDB's `REDUCE`: folds an array, `REDUCE(a, initial, (state, x) => ...)`, or a map,
//! `REDUCE(m, initial, (state, k, v) => ...)`, into one value; a NULL or empty collection gives the
//! initial state. The state takes the type the lambda returns (the initial value is cast to it).
//!
//! Rows are folded together, one element position at a time: the rows are ordered longest first, so
//! the rows still folding at position `j` are a prefix of that order and each step evaluates the lambda
//! once over them; the total work is the number of elements, however long the longest collection.

use std::cmp::Reverse;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array, new_empty_array};
use datafusion::arrow::compute::{cast, concat, interleave, take, take_arrays};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, HigherOrderFunctionArgs, HigherOrderReturnFieldArgs, HigherOrderSignature,
    HigherOrderUDFImpl, LambdaParametersProgress, ValueOrLambda, Volatility,
};

use super::lambda_input::{Flattened, entry_fields, evaluate, split_args};

/// `REDUCE` over arrays and maps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Reduce {
    signature: HigherOrderSignature,
}

impl Default for Reduce {
    fn default() -> Self {
        Reduce {
            signature: HigherOrderSignature::user_defined(Volatility::Immutable),
        }
    }
}

/// The fields of a collection's elements as the lambda sees them: the element, or a key and a value.
fn element_fields(collection: &DataType) -> Option<Vec<FieldRef>> {
    match collection {
        DataType::List(item) => Some(vec![Arc::clone(item)]),
        DataType::Map(..) => entry_fields(collection),
        _ => None,
    }
}

impl HigherOrderUDFImpl for Reduce {
    fn name(&self) -> &str {
        "reduce"
    }

    fn signature(&self) -> &HigherOrderSignature {
        &self.signature
    }

    fn coerce_value_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [DataType::List(_) | DataType::Map(..), _] => Ok(types.to_vec()),
            [DataType::Null, init] => {
                Ok(vec![DataType::new_list(DataType::Null, true), init.clone()])
            }
            _ => plan_err!(
                "Function 'reduce' expects an ARRAY or a MAP, an initial state and a lambda."
            ),
        }
    }

    fn lambda_parameters(
        &self,
        _step: usize,
        fields: &[ValueOrLambda<FieldRef, Option<FieldRef>>],
    ) -> Result<LambdaParametersProgress> {
        let (values, lambdas) = split_args(self.name(), fields, 2, 1)?;
        let Some(elements) = element_fields(values[0].data_type()) else {
            return plan_err!("Function 'reduce' expects an ARRAY or a MAP.");
        };
        // First with the initial value's type as the state's, then with the type the lambda returns.
        let (state, done) = match lambdas[0] {
            Some(out) => (Arc::clone(out), true),
            None => (Arc::clone(values[1]), false),
        };
        let params: Vec<FieldRef> = std::iter::once(state).chain(elements).collect();
        Ok(if done {
            LambdaParametersProgress::Complete(vec![params])
        } else {
            LambdaParametersProgress::Partial(vec![Some(params)])
        })
    }

    fn coerce_values_for_lambdas(
        &self,
        fields: &[ValueOrLambda<DataType, DataType>],
    ) -> Result<Option<Vec<DataType>>> {
        let (values, lambdas) = split_args(self.name(), fields, 2, 1)?;
        Ok(Some(vec![values[0].clone(), lambdas[0].clone()]))
    }

    fn return_field_from_args(&self, args: HigherOrderReturnFieldArgs) -> Result<FieldRef> {
        let (_, lambdas) = split_args(self.name(), args.arg_fields, 2, 1)?;
        Ok(Arc::new(lambdas[0].as_ref().clone().with_nullable(true)))
    }

    fn invoke_with_args(&self, args: HigherOrderFunctionArgs) -> Result<ColumnarValue> {
        let (values, lambdas) = split_args(self.name(), &args.args, 2, 1)?;
        let rows = args.number_rows;
        let flat = Flattened::of(values[0], rows)?;
        let state_type = args.return_field.data_type();
        let initial = cast(&values[1].to_array(rows)?, state_type)?;

        // Rows with elements, longest first.
        let mut order: Vec<u32> = (0..rows as u32)
            .filter(|r| flat.len_of(*r as usize) > 0)
            .collect();
        order.sort_by_key(|r| Reverse(flat.len_of(*r as usize)));
        let mut state = take(&initial, &UInt32Array::from(order.clone()), None)?;
        // States of rows that have folded all their elements, shortest rows first.
        let mut finished: Vec<ArrayRef> = Vec::new();
        let mut folding = order.len();
        for position in 0.. {
            while folding > 0 && flat.len_of(order[folding - 1] as usize) <= position {
                folding -= 1;
            }
            if folding < state.len() {
                finished.push(state.slice(folding, state.len() - folding));
                state = state.slice(0, folding);
            }
            if folding == 0 {
                break;
            }
            let at = UInt32Array::from_iter_values(
                order[..folding]
                    .iter()
                    .map(|r| (flat.offsets[*r as usize] + position) as u32),
            );
            let params: Vec<ArrayRef> = std::iter::once(state)
                .chain(take_arrays(&flat.columns, &at, None)?)
                .collect();
            let next = evaluate(
                lambdas[0],
                &params,
                &UInt32Array::from(order[..folding].to_vec()),
            )?;
            state = if next.data_type() == state_type {
                next
            } else {
                cast(&next, state_type)?
            };
        }
        finished.reverse();
        let folded = if finished.is_empty() {
            new_empty_array(state_type)
        } else {
            concat(&finished.iter().map(|a| a.as_ref()).collect::<Vec<_>>())?
        };
        let mut rank = vec![None; rows];
        for (k, r) in order.iter().enumerate() {
            rank[*r as usize] = Some(k);
        }
        let picks: Vec<(usize, usize)> = rank
            .iter()
            .enumerate()
            .map(|(row, k)| k.map_or((0, row), |k| (1, k)))
            .collect();
        Ok(ColumnarValue::Array(interleave(
            &[initial.as_ref(), folded.as_ref()],
            &picks,
        )?))
    }
}
