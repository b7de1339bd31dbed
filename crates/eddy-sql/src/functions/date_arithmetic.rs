//! ksqlDB's date arithmetic: `DATEADD`/`DATESUB(unit, n, date)`, `TIMEADD`/`TIMESUB(unit, n, time)`
//! (wrapping around midnight) and `TIMESTAMPADD`/`TIMESTAMPSUB(unit, n, timestamp)`. The unit is a bare
//! word (`DAYS`, `MILLISECONDS`, ...) that normalization turns into a string literal. Overflow is a NULL.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Date32Array, Time32MillisecondArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::arrow::datatypes::{Date32Type, Time32MillisecondType, TimestampMillisecondType};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::{refuse, strings_of};
use crate::window::unit_millis;

const DAY_MS: i64 = 86_400_000;

/// The names whose first argument is a time unit.
pub const NAMES: [&str; 6] = [
    "dateadd",
    "datesub",
    "timeadd",
    "timesub",
    "timestampadd",
    "timestampsub",
];

/// What is added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Date,
    Time,
    Timestamp,
}

impl Target {
    fn data_type(self) -> DataType {
        match self {
            Target::Date => DataType::Date32,
            Target::Time => DataType::Time32(TimeUnit::Millisecond),
            Target::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}

/// One of the six functions.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DateArithmetic {
    name: &'static str,
    target: Target,
    sign: i64,
    signature: Signature,
}

/// The six functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    NAMES
        .iter()
        .map(|&name| {
            let target = if name.starts_with("timestamp") {
                Target::Timestamp
            } else if name.starts_with("time") {
                Target::Time
            } else {
                Target::Date
            };
            ScalarUDF::from(DateArithmetic {
                name,
                target,
                sign: if name.ends_with("sub") { -1 } else { 1 },
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

impl ScalarUDFImpl for DateArithmetic {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [unit, n, target]
                if matches!(unit, DataType::Utf8 | DataType::Null)
                    && (n.is_integer() || n == &DataType::Null)
                    && (target == &self.target.data_type() || target == &DataType::Null) =>
            {
                Ok(vec![
                    DataType::Utf8,
                    DataType::Int64,
                    self.target.data_type(),
                ])
            }
            _ => Err(refuse(self.name, types)),
        }
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.target.data_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let units = strings_of(&args.args[0], rows)?;
        let n = cast(&args.args[1].to_array(rows)?, &DataType::Int64)?;
        let n = n.as_primitive::<Int64Type>();
        let values = args.args[2].to_array(rows)?;
        // A NULL, an unknown unit or an overflow: NULL.
        let delta = |i: usize| -> Option<i64> {
            if units.is_null(i) || n.is_null(i) || values.is_null(i) {
                return None;
            }
            unit_millis(units.value(i))?
                .checked_mul(n.value(i))?
                .checked_mul(self.sign)
        };
        let out: Arc<dyn Array> = match self.target {
            Target::Date => {
                let dates = values.as_primitive::<Date32Type>();
                let mut out = Vec::with_capacity(rows);
                for i in 0..rows {
                    out.push(delta(i).and_then(|d| {
                        i32::try_from(i64::from(dates.value(i)) + d.div_euclid(DAY_MS)).ok()
                    }));
                }
                Arc::new(Date32Array::from(out))
            }
            Target::Time => {
                let times = values.as_primitive::<Time32MillisecondType>();
                let mut out = Vec::with_capacity(rows);
                for i in 0..rows {
                    out.push(delta(i).and_then(|d| {
                        i32::try_from((i64::from(times.value(i)) + d).rem_euclid(DAY_MS)).ok()
                    }));
                }
                Arc::new(Time32MillisecondArray::from(out))
            }
            Target::Timestamp => {
                let stamps = values.as_primitive::<TimestampMillisecondType>();
                let mut out = Vec::with_capacity(rows);
                for i in 0..rows {
                    out.push(delta(i).and_then(|d| stamps.value(i).checked_add(d)));
                }
                Arc::new(TimestampMillisecondArray::from(out))
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}
