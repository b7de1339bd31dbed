//! Eddy's own encoding of a row of values for state it persists (join buffers, aggregation groups
//! and their accumulators' states in changelogs): a version byte, then each column's value in the
//! order of the row's schema. A value is a presence byte (0: NULL) and, when present, its bytes:
//! booleans one byte, integers (signed or not), floats, dates, times and timestamps big-endian at
//! their width, decimals as a 16-byte big-endian unscaled integer, strings
//! and bytes a u32 length and the bytes, an array or map a u32 count and then its elements (a map's
//! keys, then its values), a struct its fields in order. Nested columns are written field by field
//! (all the elements' first field, then all their second), which is how they are read back.
//!
//! The schema is not in the bytes: whoever reads a row knows what it wrote (a query's plan). Arrow's
//! row format is not used because its layout may change between arrow releases; this one changes
//! only with [`VERSION`]. Every count and length is checked against the bytes left before anything
//! is allocated, so a damaged record is an error, never a panic.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BinaryArray, BooleanArray, ListArray, MapArray,
    PrimitiveArray, StringArray, StructArray, new_empty_array, new_null_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Time32MillisecondType, TimeUnit, TimestampMillisecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};

use eddy_common::{Result, internal_err};

use crate::layout::Reader;

/// The layout version of an encoded row.
pub const VERSION: u8 = 1;
/// What the errors of this layout call it.
const WHAT: &str = "a state row";

/// Appends row `row` of `columns` to `out`, after the version byte.
pub fn encode(columns: &[ArrayRef], row: usize, out: &mut Vec<u8>) -> Result<()> {
    out.push(VERSION);
    for c in columns {
        put(c.as_ref(), &[row], out)?;
    }
    Ok(())
}

/// Reads rows written by [`encode`] back into columns of `types`; each row must hold exactly them.
/// Columns are read a column at a time across the rows (each row keeps its own place).
pub fn decode(types: &[DataType], rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
    let mut readers = rows
        .iter()
        .map(|bytes| Reader::new(bytes, VERSION, WHAT))
        .collect::<Result<Vec<_>>>()?;
    let columns = types
        .iter()
        .map(|t| read_across(t, &mut readers))
        .collect::<Result<Vec<_>>>()?;
    if readers.iter().any(|r| !r.is_done()) {
        return Err(internal_err!("{WHAT} has bytes after its last column"));
    }
    Ok(columns)
}

/// One value of type `t` from each of `readers`, as a column.
fn read_across(t: &DataType, readers: &mut [Reader<'_>]) -> Result<ArrayRef> {
    match t {
        // A nested value is laid out field by field within its row: each row's is read alone.
        DataType::List(_) | DataType::Map(..) | DataType::Struct(_) => {
            if readers.is_empty() {
                return Ok(new_empty_array(t));
            }
            let parts = readers
                .iter_mut()
                .map(|r| read(t, 1, r))
                .collect::<Result<Vec<_>>>()?;
            let parts: Vec<&dyn Array> = parts.iter().map(AsRef::as_ref).collect();
            datafusion::arrow::compute::concat(&parts).map_err(|e| internal_err!("{e}"))
        }
        _ => read_flat(t, &mut Values::Each(readers)),
    }
}

/// Writes the values at `rows` of `array`, in order.
fn put(array: &dyn Array, rows: &[usize], out: &mut Vec<u8>) -> Result<()> {
    let present = |out: &mut Vec<u8>, i: usize| {
        let valid = array.is_valid(i);
        out.push(u8::from(valid));
        valid
    };
    match array.data_type() {
        DataType::Null => rows.iter().for_each(|_| out.push(0)),
        DataType::Boolean => {
            let a = array.as_boolean();
            for &i in rows {
                if present(out, i) {
                    out.push(u8::from(a.value(i)));
                }
            }
        }
        DataType::Int8 => put_primitive::<Int8Type, 1>(array, rows, out, i8::to_be_bytes),
        DataType::Int16 => put_primitive::<Int16Type, 2>(array, rows, out, i16::to_be_bytes),
        DataType::Int32 => put_primitive::<Int32Type, 4>(array, rows, out, i32::to_be_bytes),
        DataType::Date32 => put_primitive::<Date32Type, 4>(array, rows, out, i32::to_be_bytes),
        DataType::Time32(TimeUnit::Millisecond) => {
            put_primitive::<Time32MillisecondType, 4>(array, rows, out, i32::to_be_bytes)
        }
        DataType::Int64 => put_primitive::<Int64Type, 8>(array, rows, out, i64::to_be_bytes),
        DataType::UInt8 => put_primitive::<UInt8Type, 1>(array, rows, out, u8::to_be_bytes),
        DataType::UInt16 => put_primitive::<UInt16Type, 2>(array, rows, out, u16::to_be_bytes),
        DataType::UInt32 => put_primitive::<UInt32Type, 4>(array, rows, out, u32::to_be_bytes),
        DataType::UInt64 => put_primitive::<UInt64Type, 8>(array, rows, out, u64::to_be_bytes),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            put_primitive::<TimestampMillisecondType, 8>(array, rows, out, i64::to_be_bytes)
        }
        DataType::Float32 => put_primitive::<Float32Type, 4>(array, rows, out, f32::to_be_bytes),
        DataType::Float64 => put_primitive::<Float64Type, 8>(array, rows, out, f64::to_be_bytes),
        DataType::Decimal128(_, _) => {
            put_primitive::<Decimal128Type, 16>(array, rows, out, i128::to_be_bytes)
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            for &i in rows {
                if present(out, i) {
                    put_bytes(a.value(i).as_bytes(), out)?;
                }
            }
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            for &i in rows {
                if present(out, i) {
                    put_bytes(a.value(i), out)?;
                }
            }
        }
        DataType::List(_) => {
            let a = array.as_list::<i32>();
            let elements = put_counts(array, a.value_offsets(), rows, out)?;
            put(a.values().as_ref(), &elements, out)?;
        }
        DataType::Map(_, _) => {
            let a = array.as_map();
            let entries = put_counts(array, a.value_offsets(), rows, out)?;
            put(a.keys().as_ref(), &entries, out)?;
            put(a.values().as_ref(), &entries, out)?;
        }
        DataType::Struct(_) => {
            let a = array.as_struct();
            for &i in rows {
                present(out, i);
            }
            for field in a.columns() {
                put(field.as_ref(), rows, out)?;
            }
        }
        other => return Err(unsupported(other)),
    }
    Ok(())
}

fn put_primitive<T: ArrowPrimitiveType, const N: usize>(
    array: &dyn Array,
    rows: &[usize],
    out: &mut Vec<u8>,
    bytes: fn(T::Native) -> [u8; N],
) {
    let a = array.as_primitive::<T>();
    for &i in rows {
        if a.is_valid(i) {
            out.push(1);
            out.extend_from_slice(&bytes(a.value(i)));
        } else {
            out.push(0);
        }
    }
}

fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let n = u32::try_from(bytes.len())
        .map_err(|_| internal_err!("a value of {} bytes is too long for state", bytes.len()))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Writes the presence and element count of each of `rows` of a list or map; returns the indices
/// of their elements, in order.
fn put_counts(
    array: &dyn Array,
    offsets: &[i32],
    rows: &[usize],
    out: &mut Vec<u8>,
) -> Result<Vec<usize>> {
    let mut elements = Vec::new();
    for &i in rows {
        let valid = array.is_valid(i);
        out.push(u8::from(valid));
        if !valid {
            continue;
        }
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        let n = u32::try_from(end - start).map_err(|_| {
            internal_err!(
                "a collection of {} elements is too long for state",
                end - start
            )
        })?;
        out.extend_from_slice(&n.to_be_bytes());
        elements.extend(start..end);
    }
    Ok(elements)
}

/// Reads `n` values of type `t`.
/// Where the values of a column are read from: `n` values one after another in one row (the
/// elements or fields of nested values), or one value from each of many rows.
enum Values<'s, 'a> {
    One(&'s mut Reader<'a>, usize),
    Each(&'s mut [Reader<'a>]),
}

impl<'a> Values<'_, 'a> {
    /// Each value: a presence byte and, when present, what `value` reads.
    fn read<T>(&mut self, value: impl Fn(&mut Reader<'a>) -> Result<T>) -> Result<Vec<Option<T>>> {
        let one = |r: &mut Reader<'a>| match r.u8()? {
            0 => Ok(None),
            _ => value(r).map(Some),
        };
        match self {
            Values::One(r, n) => (0..*n).map(|_| one(r)).collect(),
            Values::Each(readers) => readers.iter_mut().map(one).collect(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::One(_, n) => *n,
            Values::Each(readers) => readers.len(),
        }
    }
}

fn read(t: &DataType, n: usize, r: &mut Reader<'_>) -> Result<ArrayRef> {
    // Every value takes at least its presence byte.
    if r.rest().len() < n {
        return Err(internal_err!("{WHAT} is truncated"));
    }
    Ok(match t {
        DataType::List(field) => {
            let (offsets, nulls, total) = read_counts(n, r)?;
            let values = read(field.data_type(), total, r)?;
            Arc::new(
                ListArray::try_new(field.clone(), offsets, values, nulls)
                    .map_err(|e| internal_err!("{WHAT}: {e}"))?,
            )
        }
        DataType::Map(field, sorted) => {
            let (offsets, nulls, total) = read_counts(n, r)?;
            let DataType::Struct(kv) = field.data_type() else {
                return Err(unsupported(t));
            };
            let columns = kv
                .iter()
                .map(|f| read(f.data_type(), total, r))
                .collect::<Result<Vec<_>>>()?;
            let entries = StructArray::try_new(kv.clone(), columns, None)
                .map_err(|e| internal_err!("{WHAT}: {e}"))?;
            Arc::new(
                MapArray::try_new(field.clone(), offsets, entries, nulls, *sorted)
                    .map_err(|e| internal_err!("{WHAT}: {e}"))?,
            )
        }
        DataType::Struct(fields) => {
            let valid = (0..n)
                .map(|_| Ok(r.u8()? != 0))
                .collect::<Result<Vec<_>>>()?;
            let columns = fields
                .iter()
                .map(|f| read(f.data_type(), n, r))
                .collect::<Result<Vec<_>>>()?;
            Arc::new(
                StructArray::try_new(fields.clone(), columns, Some(NullBuffer::from(valid)))
                    .map_err(|e| internal_err!("{WHAT}: {e}"))?,
            )
        }
        flat => read_flat(flat, &mut Values::One(r, n))?,
    })
}

/// Values of a type that is not nested.
fn read_flat(t: &DataType, values: &mut Values<'_, '_>) -> Result<ArrayRef> {
    Ok(match t {
        DataType::Null => {
            let n = values.len();
            if values.read(|_| Ok(()))?.iter().any(Option::is_some) {
                return Err(internal_err!("{WHAT} has a value in a NULL column"));
            }
            new_null_array(t, n)
        }
        DataType::Boolean => {
            let values = values.read(|r| Ok(r.u8()? != 0))?;
            Arc::new(BooleanArray::from(values))
        }
        DataType::Int8 => read_primitive::<Int8Type, 1>(t, values, i8::from_be_bytes)?,
        DataType::Int16 => read_primitive::<Int16Type, 2>(t, values, i16::from_be_bytes)?,
        DataType::Int32 => read_primitive::<Int32Type, 4>(t, values, i32::from_be_bytes)?,
        DataType::Date32 => read_primitive::<Date32Type, 4>(t, values, i32::from_be_bytes)?,
        DataType::Time32(TimeUnit::Millisecond) => {
            read_primitive::<Time32MillisecondType, 4>(t, values, i32::from_be_bytes)?
        }
        DataType::Int64 => read_primitive::<Int64Type, 8>(t, values, i64::from_be_bytes)?,
        DataType::UInt8 => read_primitive::<UInt8Type, 1>(t, values, u8::from_be_bytes)?,
        DataType::UInt16 => read_primitive::<UInt16Type, 2>(t, values, u16::from_be_bytes)?,
        DataType::UInt32 => read_primitive::<UInt32Type, 4>(t, values, u32::from_be_bytes)?,
        DataType::UInt64 => read_primitive::<UInt64Type, 8>(t, values, u64::from_be_bytes)?,
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            read_primitive::<TimestampMillisecondType, 8>(t, values, i64::from_be_bytes)?
        }
        DataType::Float32 => read_primitive::<Float32Type, 4>(t, values, f32::from_be_bytes)?,
        DataType::Float64 => read_primitive::<Float64Type, 8>(t, values, f64::from_be_bytes)?,
        DataType::Decimal128(_, _) => {
            read_primitive::<Decimal128Type, 16>(t, values, i128::from_be_bytes)?
        }
        DataType::Utf8 => {
            let values = values.read(|r| {
                let bytes = read_bytes(r)?;
                std::str::from_utf8(bytes)
                    .map_err(|_| internal_err!("{WHAT} has a string that is not UTF-8"))
            })?;
            Arc::new(StringArray::from(values))
        }
        DataType::Binary => Arc::new(BinaryArray::from(values.read(read_bytes)?)),
        other => return Err(unsupported(other)),
    })
}

fn read_primitive<T: ArrowPrimitiveType, const N: usize>(
    t: &DataType,
    values: &mut Values<'_, '_>,
    from: fn([u8; N]) -> T::Native,
) -> Result<ArrayRef> {
    let values = values.read(|r| {
        let mut bytes = [0; N];
        bytes.copy_from_slice(r.take(N)?);
        Ok(from(bytes))
    })?;
    Ok(Arc::new(
        values
            .into_iter()
            .collect::<PrimitiveArray<T>>()
            .with_data_type(t.clone()),
    ))
}

fn read_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8]> {
    let n = r.u32()? as usize;
    r.take(n)
}

/// Reads the presence and element count of `n` lists or maps: their offsets, their validity and
/// how many elements follow in all.
fn read_counts(
    n: usize,
    r: &mut Reader<'_>,
) -> Result<(OffsetBuffer<i32>, Option<NullBuffer>, usize)> {
    let mut lengths = Vec::with_capacity(n);
    let mut valid = Vec::with_capacity(n);
    let mut total = 0usize;
    for _ in 0..n {
        let present = r.u8()? != 0;
        let count = if present { r.u32()? as usize } else { 0 };
        total = total.saturating_add(count);
        // Each element takes at least a byte: a count beyond what is left is a damaged record.
        if total > r.rest().len() || i32::try_from(total).is_err() {
            return Err(internal_err!("{WHAT} is truncated"));
        }
        lengths.push(count);
        valid.push(present);
    }
    Ok((
        OffsetBuffer::from_lengths(lengths),
        Some(NullBuffer::from(valid)),
        total,
    ))
}

fn unsupported(t: &DataType) -> eddy_common::Error {
    internal_err!("a value of type {t} cannot be kept in state")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_json::ReaderBuilder;
    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;

    /// Columns of every type a source column can have, from JSON rows.
    fn sample() -> (Vec<DataType>, Vec<ArrayRef>) {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            Field::new("b", DataType::Boolean, true),
            Field::new("i", DataType::Int32, true),
            Field::new("l", DataType::Int64, true),
            Field::new("d", DataType::Float64, true),
            Field::new("m", DataType::Decimal128(10, 2), true),
            Field::new("s", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("day", DataType::Date32, true),
            Field::new("tm", DataType::Time32(TimeUnit::Millisecond), true),
            Field::new(
                "a",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            Field::new(
                "st",
                DataType::Struct(
                    vec![
                        Field::new("x", DataType::Int32, true),
                        Field::new(
                            "ys",
                            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                            true,
                        ),
                    ]
                    .into(),
                ),
                true,
            ),
            Field::new_map(
                "mp",
                "entries",
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Float64, true),
                false,
                true,
            ),
        ]));
        let rows = r#"
{"b":true,"i":-7,"l":9007199254740993,"d":2.5,"m":"12.34","s":"héllo","t":1700000000123,"day":19000,"tm":3600000,"a":["x",null,"z"],"st":{"x":1,"ys":[1,2]},"mp":{"k":1.5,"n":null}}
{"b":null,"i":null,"l":null,"d":null,"m":null,"s":null,"t":null,"day":null,"tm":null,"a":null,"st":null,"mp":null}
{"b":false,"i":0,"l":-1,"d":-0.0,"m":"-0.01","s":"","t":0,"day":-1,"tm":0,"a":[],"st":{"x":null,"ys":null},"mp":{}}
"#;
        let mut reader = ReaderBuilder::new(schema.clone())
            .build(std::io::Cursor::new(rows))
            .unwrap();
        let batch = reader.next().unwrap().unwrap();
        let types = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        (types, batch.columns().to_vec())
    }

    #[test]
    fn every_type_round_trips_nulls_and_nesting_included() {
        let (types, columns) = sample();
        let encoded: Vec<Vec<u8>> = (0..columns[0].len())
            .map(|row| {
                let mut out = Vec::new();
                encode(&columns, row, &mut out).unwrap();
                out
            })
            .collect();
        let rows: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let decoded = decode(&types, &rows).unwrap();
        for (c, (got, want)) in decoded.iter().zip(&columns).enumerate() {
            assert_eq!(got.to_data(), want.to_data(), "column {c}");
        }
        // Every prefix of a row is refused, never read past.
        let row = &encoded[0];
        for cut in 0..row.len() {
            assert!(decode(&types, &[&row[..cut]]).is_err(), "cut at {cut}");
        }
        let mut longer = row.clone();
        longer.push(0);
        assert!(decode(&types, &[&longer]).is_err());
    }

    /// A row written by this version, byte by byte: later versions must keep reading it.
    #[test]
    fn reads_a_row_written_as_fixed_bytes() {
        let bytes: &[u8] = &[
            1, // version
            1, 0, 0, 0, 42, // INT 42
            1, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, // BIGINT 1000
            1, 0, 0, 0, 2, b'o', b'k', // STRING 'ok'
            0,    // STRING NULL
            1, 0, 0, 0, 2, // ARRAY<INT> of two:
            1, 0, 0, 0, 1, 0, // 1, NULL
        ];
        let types = [
            DataType::Int32,
            DataType::Int64,
            DataType::Utf8,
            DataType::Utf8,
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
        ];
        let c = decode(&types, &[bytes]).unwrap();
        assert_eq!(c[0].as_ref(), &Int32Array::from(vec![42]) as &dyn Array);
        assert_eq!(c[1].as_ref(), &Int64Array::from(vec![1000]) as &dyn Array);
        assert_eq!(c[2].as_ref(), &StringArray::from(vec!["ok"]) as &dyn Array);
        assert!(c[3].is_null(0));
        let list = c[4].as_list::<i32>().value(0);
        assert_eq!(
            list.as_ref(),
            &Int32Array::from(vec![Some(1), None]) as &dyn Array
        );
        // And this version writes exactly those bytes.
        let mut out = Vec::new();
        encode(&c, 0, &mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn a_count_beyond_the_bytes_left_is_refused_before_allocating() {
        let types = [DataType::List(Arc::new(Field::new(
            "item",
            DataType::Int32,
            true,
        )))];
        let e = decode(&types, &[&[1, 1, 0xff, 0xff, 0xff, 0xff]]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(
            decode(&[DataType::Int32], &[&[2, 0]]).is_err(),
            "another version"
        );
    }
}
