//! ksqlDB's `GENERATE_SERIES(start, end[, step])`: the array of values from start to end inclusive,
//! counting by the step (by default 1 upwards, or -1 when end is below start). A zero step, a step
//! away from the end, or a series longer than [`MAX_LENGTH`] gives NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, ListBuilder, PrimitiveBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::refuse;

/// The longest series one call makes.
pub const MAX_LENGTH: i64 = 1_000_000;

pub fn generate_series() -> ScalarUDF {
    ScalarUDF::from(GenerateSeries {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct GenerateSeries {
    signature: Signature,
}

/// The values of one series, `None` when it has none that ksqlDB would give.
fn series(start: i64, end: i64, step: Option<i64>) -> Option<impl Iterator<Item = i64>> {
    let step = step.unwrap_or(if end < start { -1 } else { 1 });
    if step == 0 || (end as i128 - start as i128).signum() * (step.signum() as i128) < 0 {
        return None;
    }
    let count = (end as i128 - start as i128) / step as i128 + 1;
    if count > MAX_LENGTH as i128 {
        return None;
    }
    Some((0..count as i64).map(move |i| start + i * step))
}

impl ScalarUDFImpl for GenerateSeries {
    fn name(&self) -> &str {
        "generate_series"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let int = |t: &DataType| matches!(t, DataType::Int8 | DataType::Int16 | DataType::Int32);
        let integral = |t: &DataType| int(t) || matches!(t, DataType::Int64 | DataType::Null);
        match types {
            [a, b] | [a, b, _] if !types.iter().all(integral) || !integral(a) || !integral(b) => {
                Err(refuse(self.name(), types))
            }
            [a, b, ..] => {
                let bound = if int(a) && int(b) {
                    DataType::Int32
                } else {
                    DataType::Int64
                };
                let mut out = vec![bound.clone(), bound];
                if types.len() == 3 {
                    out.push(DataType::Int32);
                }
                Ok(out)
            }
            _ => Err(refuse(self.name(), types)),
        }
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            types[0].clone(),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let wide = |i: usize| -> Result<Option<Int64Array>> {
            match args.args.get(i) {
                Some(a) => Ok(Some(
                    cast(&a.to_array(rows)?, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                )),
                None => Ok(None),
            }
        };
        let (Some(starts), Some(ends), steps) = (wide(0)?, wide(1)?, wide(2)?) else {
            return exec_err!("generate_series needs a start and an end");
        };
        let bounds: Vec<Option<(i64, i64, Option<i64>)>> = (0..rows)
            .map(|r| {
                let step = match &steps {
                    Some(s) if s.is_null(r) => return None,
                    Some(s) => Some(s.value(r)),
                    None => None,
                };
                (starts.is_valid(r) && ends.is_valid(r))
                    .then(|| (starts.value(r), ends.value(r), step))
            })
            .collect();
        let list = if args.arg_fields[0].data_type() == &DataType::Int32 {
            let mut out = ListBuilder::new(PrimitiveBuilder::<Int32Type>::new());
            for b in &bounds {
                match b.and_then(|(s, e, st)| series(s, e, st)) {
                    Some(values) => {
                        out.values().extend(values.map(|v| i32::try_from(v).ok()));
                        out.append(true);
                    }
                    None => out.append(false),
                }
            }
            Arc::new(out.finish()) as Arc<dyn Array>
        } else {
            let mut out = ListBuilder::new(PrimitiveBuilder::<Int64Type>::new());
            for b in &bounds {
                match b.and_then(|(s, e, st)| series(s, e, st)) {
                    Some(values) => {
                        out.values().extend(values.map(Some));
                        out.append(true);
                    }
                    None => out.append(false),
                }
            }
            Arc::new(out.finish())
        };
        Ok(ColumnarValue::Array(list))
    }
}

#[cfg(test)]
mod tests {
    use super::series;

    fn of(start: i64, end: i64, step: Option<i64>) -> Option<Vec<i64>> {
        series(start, end, step).map(Iterator::collect)
    }

    #[test]
    fn series_count_either_way_and_refuse_what_never_ends() {
        assert_eq!(of(0, 3, None), Some(vec![0, 1, 2, 3]));
        assert_eq!(of(4, 0, None), Some(vec![4, 3, 2, 1, 0]));
        assert_eq!(of(-2, 1, Some(2)), Some(vec![-2, 0]));
        assert_eq!(of(9, 0, Some(-3)), Some(vec![9, 6, 3, 0]));
        assert_eq!(of(0, 3, Some(0)), None);
        assert_eq!(of(0, 3, Some(-1)), None);
        assert_eq!(of(i64::MIN, i64::MAX, None), None);
        assert_eq!(of(5, 5, Some(7)), Some(vec![5]));
    }
}
