//! Conversions between epoch numbers and ksqlDB's time types: `FROM_UNIXTIME(millis)`,
//! `UNIX_TIMESTAMP([timestamp])` (now without an argument), `FROM_DAYS(days)` and `UNIX_DATE([date])`
//! (today without an argument).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Int32Array, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// One conversion: from `from` to `to` by a cast of the stored number; with no argument, now.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Epoch {
    name: &'static str,
    to: DataType,
    signature: Signature,
}

/// The four functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
    [
        ("from_unixtime", DataType::Int64, timestamp.clone(), false),
        ("unix_timestamp", timestamp, DataType::Int64, true),
        ("from_days", DataType::Int32, DataType::Date32, false),
        ("unix_date", DataType::Date32, DataType::Int32, true),
    ]
    .into_iter()
    .map(|(name, from, to, now)| {
        let mut forms = vec![TypeSignature::Exact(vec![from])];
        if now {
            forms.push(TypeSignature::Exact(vec![]));
        }
        ScalarUDF::from(Epoch {
            name,
            to,
            // Without an argument the result changes with the clock.
            signature: Signature::one_of(
                forms,
                if now {
                    Volatility::Volatile
                } else {
                    Volatility::Immutable
                },
            ),
        })
    })
    .collect()
}

impl ScalarUDFImpl for Epoch {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.to.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(value) = args.args.first() else {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            return Ok(ColumnarValue::Array(match self.to {
                DataType::Int32 => {
                    Arc::new(Int32Array::from(vec![
                        i32::try_from(millis / 86_400_000)
                            .unwrap_or(i32::MAX);
                        rows
                    ]))
                }
                _ => Arc::new(Int64Array::from(vec![millis; rows])),
            }));
        };
        // The stored numbers are the epoch numbers: a TIMESTAMP is milliseconds, a DATE days.
        let value = value.to_array(rows)?;
        let number = match value.data_type() {
            DataType::Date32 => cast(&value, &DataType::Int32)?,
            DataType::Timestamp(_, _) => cast(&value, &DataType::Int64)?,
            _ => value,
        };
        Ok(ColumnarValue::Array(cast(&number, &self.to)?))
    }
}
