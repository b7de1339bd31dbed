//! `SUM_LIST(array)`: ksqlDB's aggregate that adds up every element of every array it sees (nulls
//! skipped), typed as the elements (INT, BIGINT or DOUBLE); retractable for aggregation over a table.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

pub fn sum_list() -> AggregateUDF {
    AggregateUDF::from(SumList {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SumList {
    signature: Signature,
}

fn element_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [DataType::List(f)]
            if matches!(
                f.data_type(),
                DataType::Int32 | DataType::Int64 | DataType::Float64
            ) =>
        {
            Some(f.data_type().clone())
        }
        _ => None,
    }
}

impl AggregateUDFImpl for SumList {
    fn name(&self) -> &str {
        "sum_list"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match element_type(args) {
            Some(t) => Ok(t),
            None => plan_err!(
                "Function 'SUM_LIST' does not accept parameters ({}): it takes an ARRAY of INT, BIGINT or DOUBLE",
                args.iter()
                    .map(|t| t.to_string().to_uppercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<Arc<Field>>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sum]", args.name),
            args.return_field.data_type().clone(),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let output = args.return_field.data_type().clone();
        Ok(Box::new(SumListAccumulator {
            integral: output != DataType::Float64,
            output,
            int: 0,
            float: 0.0,
        }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

#[derive(Debug)]
struct SumListAccumulator {
    output: DataType,
    integral: bool,
    int: i64,
    float: f64,
}

impl SumListAccumulator {
    /// Adds (`sign` 1) or takes away (-1) the non-null values of an array of numbers.
    fn add(&mut self, values: &ArrayRef, sign: i64) -> Result<()> {
        if self.integral {
            let v = cast(values, &DataType::Int64)?;
            for x in v.as_primitive::<Int64Type>().iter().flatten() {
                self.int = self.int.wrapping_add(sign.wrapping_mul(x));
            }
        } else {
            let v = cast(values, &DataType::Float64)?;
            for x in v.as_primitive::<Float64Type>().iter().flatten() {
                self.float += sign as f64 * x;
            }
        }
        Ok(())
    }

    fn fold(&mut self, lists: &ArrayRef, sign: i64) -> Result<()> {
        let lists = lists.as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                self.add(&lists.value(i), sign)?;
            }
        }
        Ok(())
    }
}

impl Accumulator for SumListAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.fold(&values[0], 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.fold(&values[0], -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add(&states[0], 1)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let value = if self.integral {
            ScalarValue::Int64(Some(self.int))
        } else {
            ScalarValue::Float64(Some(self.float))
        };
        value.cast_to(&self.output)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}
