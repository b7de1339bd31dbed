//! ksqlDB's date and timestamp functions with Java `DateTimeFormatter` patterns: `PARSE_DATE`,
//! `FORMAT_DATE`, `PARSE_TIME`, `FORMAT_TIME`, `PARSE_TIMESTAMP` (UTC or a given zone, unless the text
//! names one),
//! `FORMAT_TIMESTAMP` and `TIMESTAMPTOSTRING` (UTC or a given
//! zone). A value that does not parse gives NULL.

use std::sync::Arc;

use std::fmt::Write;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveTime, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Int64Array, StringBuilder, Time32MillisecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Int64Type, Time32MillisecondType, TimeUnit,
};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility, create_udf,
};

use super::{overloaded, rows_of, strings_of};
use crate::java::{chrono_format, formatted, parse_date as parse_java_date, parse_millis};
use crate::java_zone::Zone;

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// A function of (value, pattern) evaluated row by row with the pattern converted once per row batch;
/// `eval`'s result is cast to `output` (days as a DATE or an INT).
fn with_pattern(
    name: &str,
    input: DataType,
    output: DataType,
    eval: fn(&ArrayRef, &datafusion::arrow::array::StringArray) -> Result<ArrayRef>,
) -> ScalarUDF {
    let cast_to = output.clone();
    create_udf(
        name,
        vec![input, DataType::Utf8],
        output,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let values = args[0].to_array(rows)?;
            let patterns = strings_of(&args[1], rows)?;
            Ok(ColumnarValue::Array(cast(
                &eval(&values, &patterns)?,
                &cast_to,
            )?))
        }),
    )
}

/// `PARSE_DATE(text, pattern) -> DATE`.
pub fn parse_date() -> ScalarUDF {
    parse_days("parse_date", DataType::Date32)
}

/// `STRINGTODATE(text, pattern) -> INT`: ksqlDB's older PARSE_DATE, in days since the epoch.
pub fn stringtodate() -> ScalarUDF {
    parse_days("stringtodate", DataType::Int32)
}

/// `DATETOSTRING(days, pattern) -> STRING`: ksqlDB's older FORMAT_DATE, over days since the epoch.
pub fn datetostring() -> ScalarUDF {
    format_days("datetostring", DataType::Int32)
}

/// A date parsed into days since the epoch, as `output` (DATE or INT).
fn parse_days(name: &str, output: DataType) -> ScalarUDF {
    with_pattern(name, DataType::Utf8, output, |values, patterns| {
        let texts = cast(values, &DataType::Utf8)?;
        let mut out = Date32Builder::new();
        for (t, p) in texts.as_string::<i32>().iter().zip(patterns.iter()) {
            out.append_option(t.zip(p).and_then(|(t, p)| {
                let date = parse_java_date(t, &chrono_format(p))?;
                i32::try_from((date - EPOCH).num_days()).ok()
            }));
        }
        Ok(Arc::new(out.finish()))
    })
}

/// `FORMAT_DATE(date, pattern) -> STRING`.
pub fn format_date() -> ScalarUDF {
    format_days("format_date", DataType::Date32)
}

/// Days since the epoch (`input`: DATE or INT) formatted.
fn format_days(name: &str, input: DataType) -> ScalarUDF {
    with_pattern(name, input, DataType::Utf8, |values, patterns| {
        let mut out = StringBuilder::new();
        let values = cast(values, &DataType::Date32)?;
        let dates = values.as_primitive::<Date32Type>();
        for (d, p) in dates.iter().zip(patterns.iter()) {
            out.append_option(d.zip(p).and_then(|(d, p)| {
                let date = EPOCH.checked_add_signed(chrono::Duration::days(d.into()))?;
                formatted(date.format(&chrono_format(p)))
            }));
        }
        Ok(Arc::new(out.finish()))
    })
}

/// `PARSE_TIME(text, pattern) -> TIME`.
pub fn parse_time() -> ScalarUDF {
    with_pattern(
        "parse_time",
        DataType::Utf8,
        DataType::Time32(TimeUnit::Millisecond),
        |values, patterns| {
            let texts = cast(values, &DataType::Utf8)?;
            let mut out = Time32MillisecondBuilder::new();
            for (t, p) in texts.as_string::<i32>().iter().zip(patterns.iter()) {
                out.append_option(t.zip(p).and_then(|(t, p)| {
                    let time = NaiveTime::parse_from_str(t, &chrono_format(p)).ok()?;
                    let millis =
                        time.num_seconds_from_midnight() * 1000 + time.nanosecond() / 1_000_000;
                    i32::try_from(millis).ok()
                }));
            }
            Ok(Arc::new(out.finish()))
        },
    )
}

/// `FORMAT_TIME(time, pattern) -> STRING`.
pub fn format_time() -> ScalarUDF {
    with_pattern(
        "format_time",
        DataType::Time32(TimeUnit::Millisecond),
        DataType::Utf8,
        |values, patterns| {
            let mut out = StringBuilder::new();
            let times = values.as_primitive::<Time32MillisecondType>();
            for (t, p) in times.iter().zip(patterns.iter()) {
                out.append_option(t.zip(p).and_then(|(t, p)| {
                    let millis = u32::try_from(t).ok()?;
                    let time = NaiveTime::from_num_seconds_from_midnight_opt(
                        millis / 1000,
                        millis % 1000 * 1_000_000,
                    )?;
                    formatted(time.format(&chrono_format(p)))
                }));
            }
            Ok(Arc::new(out.finish()))
        },
    )
}

/// `PARSE_TIMESTAMP(text, pattern[, zone]) -> TIMESTAMP`: the text read in the zone (UTC by
/// default), unless the pattern reads a zone or offset from the text itself.
pub fn parse_timestamp() -> ScalarUDF {
    parse_instants("parse_timestamp", timestamp_type())
}

/// `STRINGTOTIMESTAMP(text, pattern[, zone]) -> BIGINT`: ksqlDB's older PARSE_TIMESTAMP, in
/// milliseconds.
pub fn stringtotimestamp() -> ScalarUDF {
    parse_instants("stringtotimestamp", DataType::Int64)
}

/// Instants parsed from (text, pattern[, zone]), as `output` (a TIMESTAMP or a BIGINT).
fn parse_instants(name: &str, output: DataType) -> ScalarUDF {
    let cast_to = output.clone();
    let text = DataType::Utf8;
    overloaded(
        name,
        vec![vec![text.clone(); 2], vec![text; 3]],
        output,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let texts = strings_of(&args[0], rows)?;
            let patterns = strings_of(&args[1], rows)?;
            let zones = args.get(2).map(|z| strings_of(z, rows)).transpose()?;
            // Patterns are mostly constants: each is converted once, when it changes.
            let mut format: Option<(&str, String)> = None;
            let millis: Int64Array = (0..rows)
                .map(|i| {
                    let (t, p) = (texts.is_valid(i), patterns.is_valid(i));
                    let (t, p) = (t.then(|| texts.value(i))?, p.then(|| patterns.value(i))?);
                    if format.as_ref().is_none_or(|(last, _)| *last != p) {
                        format = Some((p, chrono_format(p)));
                    }
                    let (_, f) = format.as_ref()?;
                    let as_utc = parse_millis(t, f)?;
                    let Some(zones) = &zones else {
                        return Some(as_utc);
                    };
                    let zone = Zone::parse(zones.is_valid(i).then(|| zones.value(i))?)?;
                    if ["%z", "%:z", "%Z"].iter().any(|z| f.contains(z)) {
                        return Some(as_utc);
                    }
                    let local = DateTime::from_timestamp_millis(as_utc)?.naive_utc();
                    Some(zone.instant(&local)?.timestamp_millis())
                })
                .collect();
            Ok(ColumnarValue::Array(cast(&millis, &cast_to)?))
        }),
    )
}

/// `FORMAT_TIMESTAMP(timestamp, pattern[, zone]) -> STRING` and ksqlDB's older
/// `TIMESTAMPTOSTRING(millis, pattern[, zone])` over BIGINT: in UTC or the named time zone
/// (`'America/Los_Angeles'`, `'+01:00'`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FormatTimestamp {
    name: &'static str,
    signature: Signature,
}

impl FormatTimestamp {
    /// `FORMAT_TIMESTAMP`, over TIMESTAMP values.
    pub fn over_timestamps() -> Self {
        Self::over("format_timestamp", timestamp_type())
    }

    /// `TIMESTAMPTOSTRING`, over epoch milliseconds.
    pub fn over_millis() -> Self {
        Self::over("timestamptostring", DataType::Int64)
    }

    fn over(name: &'static str, input: DataType) -> Self {
        let two = vec![input.clone(), DataType::Utf8];
        let three = vec![input, DataType::Utf8, DataType::Utf8];
        FormatTimestamp {
            name,
            signature: Signature::one_of(
                vec![TypeSignature::Exact(two), TypeSignature::Exact(three)],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for FormatTimestamp {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let millis = cast(&args.args[0].to_array(rows)?, &DataType::Int64)?;
        let patterns = strings_of(&args.args[1], rows)?;
        let zones = args.args.get(2).map(|z| strings_of(z, rows)).transpose()?;
        let mut out = StringBuilder::with_capacity(rows, rows * 24);
        // Patterns and zones are mostly constants: each is parsed once, when it changes.
        let mut pattern: Option<(&str, Option<Vec<Item<'static>>>)> = None;
        let mut zone: Option<(&str, Option<Zone>)> = None;
        let mut text = String::new();
        for (i, (t, p)) in millis
            .as_primitive::<Int64Type>()
            .iter()
            .zip(patterns.iter())
            .enumerate()
        {
            let (Some(t), Some(p)) = (t, p) else {
                out.append_null();
                continue;
            };
            if pattern.as_ref().is_none_or(|(last, _)| *last != p) {
                let items = StrftimeItems::new(&chrono_format(p)).parse_to_owned().ok();
                pattern = Some((p, items));
            }
            let items = pattern.as_ref().and_then(|(_, items)| items.as_deref());
            let in_zone = match &zones {
                Some(z) if z.is_null(i) => None,
                Some(z) => {
                    let name = z.value(i);
                    if zone.as_ref().is_none_or(|(last, _)| *last != name) {
                        zone = Some((name, Zone::parse(name)));
                    }
                    zone.as_ref().and_then(|(_, parsed)| *parsed).map(Some)
                }
                None => Some(None),
            };
            let (Some(items), Some(in_zone), Some(utc)) =
                (items, in_zone, DateTime::from_timestamp_millis(t))
            else {
                out.append_null();
                continue;
            };
            text.clear();
            let written = match in_zone {
                None => write!(text, "{}", utc.format_with_items(items.iter())),
                Some(Zone::Region(tz)) => write!(
                    text,
                    "{}",
                    utc.with_timezone(&tz).format_with_items(items.iter())
                ),
                Some(Zone::Fixed(offset)) => write!(
                    text,
                    "{}",
                    utc.with_timezone(&offset).format_with_items(items.iter())
                ),
            };
            // A pattern asking for what a value lacks is a formatting error: NULL.
            match written {
                Ok(()) => out.append_value(&text),
                Err(_) => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_and_without_zones() {
        let f = chrono_format("yyyy-MM-dd'T'HH:mm:ss");
        assert_eq!(parse_millis("1970-01-01T00:00:01", &f), Some(1000));
        let z = chrono_format("yyyy-MM-dd HH:mm:ssXXX");
        assert_eq!(parse_millis("1970-01-01 01:00:00+01:00", &z), Some(0));
        assert_eq!(parse_millis("nope", &f), None);
    }
}
