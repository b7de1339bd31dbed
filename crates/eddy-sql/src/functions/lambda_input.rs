//! What the lambdas of ksqlDB's `TRANSFORM`, `FILTER` and `REDUCE` see of a collection argument: the
//! elements (of an array) or the keys and values (of a map) of every non-NULL row, flattened into
//! arrays, with the row each element came from so that columns a lambda captures can be spread to it.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, MapArray, StructArray, UInt32Array};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{take, take_arrays};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, LambdaArgument, ValueOrLambda};

/// A collection argument, flattened.
pub struct Flattened {
    /// The element arrays: one for an array, keys then values for a map.
    pub columns: Vec<ArrayRef>,
    /// `offsets[i]..offsets[i + 1]` are row `i`'s elements in `columns` (empty for a NULL row).
    pub offsets: Vec<usize>,
    /// Which rows are NULL.
    pub nulls: Option<NullBuffer>,
}

impl Flattened {
    /// Flattens an array (`List`) or map argument of `rows` rows.
    pub fn of(value: &ColumnarValue, rows: usize) -> Result<Flattened> {
        let array = value.to_array(rows)?;
        let (columns, bounds): (Vec<ArrayRef>, Vec<usize>) = match array.data_type() {
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                (
                    vec![list.values().clone()],
                    list.offsets().iter().map(|o| *o as usize).collect(),
                )
            }
            DataType::Map(_, _) => {
                let map = array.as_map();
                (
                    vec![map.keys().clone(), map.values().clone()],
                    map.offsets().iter().map(|o| *o as usize).collect(),
                )
            }
            other => return exec_err!("expected an array or a map, got {other}"),
        };
        let nulls = array.nulls().cloned();
        // Keep only the elements of non-NULL rows, so no lambda runs on values a NULL row hides.
        let mut keep = Vec::with_capacity(bounds.last().copied().unwrap_or(0));
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        for row in 0..array.len() {
            if nulls.as_ref().is_none_or(|n| n.is_valid(row)) {
                keep.extend(bounds[row] as u32..bounds[row + 1] as u32);
            }
            offsets.push(keep.len());
        }
        let keep = UInt32Array::from(keep);
        let columns = take_arrays(&columns, &keep, None)?;
        Ok(Flattened {
            columns,
            offsets,
            nulls,
        })
    }

    /// The number of elements in row `row`.
    pub fn len_of(&self, row: usize) -> usize {
        self.offsets[row + 1] - self.offsets[row]
    }

    /// The row of each element.
    pub fn element_rows(&self) -> UInt32Array {
        let mut rows = Vec::with_capacity(self.offsets.last().copied().unwrap_or(0));
        for (row, pair) in self.offsets.windows(2).enumerate() {
            rows.extend(std::iter::repeat_n(row as u32, pair[1] - pair[0]));
        }
        UInt32Array::from(rows)
    }

    /// Evaluates `lambda` once over every element, its parameters bound to `params` (arrays as long as
    /// the elements) and its captured columns spread to the elements' rows.
    pub fn evaluate(&self, lambda: &LambdaArgument, params: &[ArrayRef]) -> Result<ArrayRef> {
        evaluate(lambda, params, &self.element_rows())
    }
}

/// Evaluates `lambda` with its parameters bound to `params`, whose `i`th values belong to row
/// `rows[i]` of the batch (where the columns the lambda captures are taken from).
pub fn evaluate(
    lambda: &LambdaArgument,
    params: &[ArrayRef],
    rows: &UInt32Array,
) -> Result<ArrayRef> {
    let closures: Vec<Box<dyn Fn() -> Result<ArrayRef>>> = params
        .iter()
        .map(|p| {
            let p = p.clone();
            Box::new(move || Ok(p.clone())) as Box<dyn Fn() -> Result<ArrayRef>>
        })
        .collect();
    let refs: Vec<&dyn Fn() -> Result<ArrayRef>> = closures.iter().map(|c| c.as_ref()).collect();
    lambda
        .evaluate(&refs, |captured| Ok(take_arrays(captured, rows, None)?))?
        .into_array(rows.len())
}

/// Builds a map array from flattened keys and values; a row whose keys include a NULL or a repeated
/// key is NULL (ksqlDB's map functions fail on those rows).
pub fn rebuild_map(
    map_type: &DataType,
    keys: ArrayRef,
    values: ArrayRef,
    offsets: &[usize],
    nulls: Option<&NullBuffer>,
) -> Result<ArrayRef> {
    let rows = offsets.len() - 1;
    let key_rows = RowConverter::new(vec![SortField::new(keys.data_type().clone())])?
        .convert_columns(std::slice::from_ref(&keys))?;
    let mut keep = Vec::with_capacity(keys.len());
    let mut new_offsets = Vec::with_capacity(rows + 1);
    new_offsets.push(0i32);
    let mut valid = Vec::with_capacity(rows);
    let mut seen = HashSet::new();
    for row in 0..rows {
        let (start, end) = (offsets[row], offsets[row + 1]);
        seen.clear();
        let mut ok = nulls.is_none_or(|n| n.is_valid(row));
        for i in start..end {
            if keys.is_null(i) || !seen.insert(key_rows.row(i)) {
                ok = false;
                break;
            }
        }
        if ok {
            keep.extend(start as u32..end as u32);
        }
        valid.push(ok);
        let Ok(end) = i32::try_from(keep.len()) else {
            return exec_err!("a map of more than {} entries", i32::MAX);
        };
        new_offsets.push(end);
    }
    let keep = UInt32Array::from(keep);
    let keys = take(&keys, &keep, None)?;
    let values = take(&values, &keep, None)?;
    let DataType::Map(field, _) = map_type else {
        return exec_err!("expected a map type, got {map_type}");
    };
    let DataType::Struct(kv) = field.data_type() else {
        return exec_err!("expected map entries, got {}", field.data_type());
    };
    let entries = StructArray::try_new(kv.clone(), vec![keys, values], None)?;
    Ok(Arc::new(MapArray::try_new(
        field.clone(),
        OffsetBuffer::new(new_offsets.into()),
        entries,
        Some(NullBuffer::from(valid)),
        false,
    )?))
}

/// The map type with these key and value types.
pub fn map_type(key: &DataType, value: &DataType) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", key.clone(), false),
                Field::new("value", value.clone(), true),
            ])),
            false,
        )),
        false,
    )
}

/// The fields a lambda over a map's entries is given: its key, then its value.
pub fn entry_fields(map: &DataType) -> Option<Vec<FieldRef>> {
    match map {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => Some(vec![
                Arc::new(kv[0].as_ref().clone().with_nullable(true)),
                kv[1].clone(),
            ]),
            _ => None,
        },
        _ => None,
    }
}

/// Splits a higher-order call's arguments into its collection (first) and its lambdas, checking
/// that the others are `values` value arguments followed by `lambdas` lambdas.
pub fn split_args<'a, V, L>(
    name: &str,
    args: &'a [ValueOrLambda<V, L>],
    values: usize,
    lambdas: usize,
) -> Result<(Vec<&'a V>, Vec<&'a L>)> {
    let mut vs = Vec::new();
    let mut ls = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        match arg {
            ValueOrLambda::Value(v) if i < values => vs.push(v),
            ValueOrLambda::Lambda(l) if i >= values => ls.push(l),
            _ => break,
        }
    }
    if vs.len() != values || ls.len() != lambdas || args.len() != values + lambdas {
        return plan_err!(
            "Function '{name}' expects {values} value argument(s) followed by {lambdas} lambda(s)."
        );
    }
    Ok((vs, ls))
}

/// Whether a higher-order call's first argument is a map (rather than an array).
pub fn over_map<L>(args: &[ValueOrLambda<FieldRef, L>]) -> bool {
    matches!(args.first(), Some(ValueOrLambda::Value(f)) if matches!(f.data_type(), DataType::Map(..)))
}
