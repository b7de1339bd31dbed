//! ksqlDB's `CONVERT_TZ(ts, from_zone, to_zone)`: a timestamp read as a wall-clock time in one zone
//! and rewritten as the same instant's wall-clock time in another (an unknown zone gives NULL).

use std::sync::Arc;

use chrono::DateTime;
use datafusion::arrow::array::{AsArray, TimestampMillisecondBuilder};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use super::{rows_of, strings_of};
use crate::java_zone::Zone;

/// `CONVERT_TZ(TIMESTAMP, STRING, STRING) -> TIMESTAMP`.
pub fn convert_tz() -> ScalarUDF {
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
    create_udf(
        "convert_tz",
        vec![timestamp.clone(), DataType::Utf8, DataType::Utf8],
        timestamp,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let values = args[0].to_array(rows)?;
            let times = values.as_primitive::<TimestampMillisecondType>();
            let from = strings_of(&args[1], rows)?;
            let to = strings_of(&args[2], rows)?;
            let mut out = TimestampMillisecondBuilder::new();
            for ((t, f), z) in times.iter().zip(from.iter()).zip(to.iter()) {
                out.append_option(t.zip(f).zip(z).and_then(|((t, f), z)| {
                    let local = DateTime::from_timestamp_millis(t)?.naive_utc();
                    let instant = Zone::parse(f)?.instant(&local)?;
                    let moved = Zone::parse(z)?.local(&instant);
                    Some(moved.and_utc().timestamp_millis())
                }));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}
