//! Reading single values out of Arrow arrays for the row-oriented binary writers (AVRO, PROTOBUF),
//! whatever physical type a query produced them in.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Time32MillisecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

/// An integer-like value of an Arrow array (dates in days, times and timestamps in milliseconds).
pub fn int_value(a: &dyn Array, row: usize) -> Option<i64> {
    Some(match a.data_type() {
        DataType::Int8 => a.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(row),
        DataType::Date32 => a.as_primitive::<Date32Type>().value(row).into(),
        DataType::Time32(TimeUnit::Millisecond) => {
            a.as_primitive::<Time32MillisecondType>().value(row).into()
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            a.as_primitive::<TimestampMillisecondType>().value(row)
        }
        DataType::Timestamp(TimeUnit::Second, _) => {
            a.as_primitive::<TimestampSecondType>().value(row) * 1000
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => a
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .div_euclid(1000),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => a
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1_000_000),
        _ => return None,
    })
}

pub fn text_value(a: &dyn Array, row: usize) -> Option<&str> {
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(row)),
        DataType::Utf8View => Some(a.as_string_view().value(row)),
        _ => None,
    }
}

pub fn binary_value(a: &dyn Array, row: usize) -> Option<&[u8]> {
    match a.data_type() {
        DataType::Binary => Some(a.as_binary::<i32>().value(row)),
        DataType::LargeBinary => Some(a.as_binary::<i64>().value(row)),
        DataType::BinaryView => Some(a.as_binary_view().value(row)),
        _ => None,
    }
}

/// A floating-point (or integer) value.
pub fn float_value(a: &dyn Array, row: usize) -> Option<f64> {
    match a.data_type() {
        DataType::Float64 => Some(a.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Some(a.as_primitive::<Float32Type>().value(row).into()),
        _ => int_value(a, row).map(|i| i as f64),
    }
}

/// A decimal value, unscaled at `scale`.
pub fn decimal_value(a: &dyn Array, row: usize, scale: i8) -> Option<i128> {
    let DataType::Decimal128(_, from) = a.data_type() else {
        return None;
    };
    Some(rescale(
        a.as_primitive::<Decimal128Type>().value(row),
        *from,
        scale,
    ))
}

/// An unscaled decimal moved from scale `from` to scale `to` (rounding half up when it shrinks).
pub fn rescale(v: i128, from: i8, to: i8) -> i128 {
    match to - from {
        0 => v,
        up if up > 0 => v.saturating_mul(10i128.pow(up as u32)),
        down => {
            let p = 10i128.pow((-down) as u32);
            let q = v / p;
            let r = v % p;
            if r.abs() * 2 >= p { q + v.signum() } else { q }
        }
    }
}

/// The minimal big-endian two's complement bytes of an unscaled decimal.
pub fn decimal_bytes(v: i128, fixed: Option<usize>) -> Vec<u8> {
    let all = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (all[start], all[start + 1]);
        let redundant = (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    let minimal = &all[start..];
    match fixed {
        Some(n) if n > minimal.len() => {
            let fill = if v < 0 { 0xff } else { 0 };
            let mut out = vec![fill; n - minimal.len()];
            out.extend_from_slice(minimal);
            out
        }
        _ => minimal.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_take_the_fewest_bytes() {
        assert_eq!(decimal_bytes(0, None), vec![0]);
        assert_eq!(decimal_bytes(127, None), vec![0x7f]);
        assert_eq!(decimal_bytes(128, None), vec![0x00, 0x80]);
        assert_eq!(decimal_bytes(-1, None), vec![0xff]);
        assert_eq!(decimal_bytes(-129, None), vec![0xff, 0x7f]);
        assert_eq!(decimal_bytes(-1, Some(3)), vec![0xff, 0xff, 0xff]);
        assert_eq!(rescale(1255, 3, 2), 126);
        assert_eq!(rescale(-1255, 3, 2), -126);
        assert_eq!(rescale(12, 0, 2), 1200);
    }
}
