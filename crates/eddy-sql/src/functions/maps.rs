//! ksqlDB's conversions between maps and arrays: `AS_MAP(keys, values)` pairs two arrays into a map
//! (a NULL key is left out, a repeated key keeps its last value, the longer array's extra elements are
//! ignored) and `ENTRIES(map, sorted)` lists a map's entries as `STRUCT<K, V>`s, by key if asked.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, ListArray, MapArray, StructArray, UInt32Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::refuse;
use crate::types::SqlType;

/// Both functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    [true, false]
        .into_iter()
        .map(|to_map| {
            ScalarUDF::from(MapConversion {
                to_map,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

/// `AS_MAP` (`to_map`) or `ENTRIES`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MapConversion {
    to_map: bool,
    signature: Signature,
}

fn entry_fields(value: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("K", DataType::Utf8, true),
        Field::new("V", value.clone(), true),
    ])
}

impl ScalarUDFImpl for MapConversion {
    fn name(&self) -> &str {
        if self.to_map { "as_map" } else { "entries" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let fits = match types {
            [DataType::List(k), DataType::List(_)] if self.to_map => {
                k.data_type() == &DataType::Utf8
            }
            [DataType::Map(entries, _), DataType::Boolean] if !self.to_map => matches!(
                entries.data_type(),
                DataType::Struct(kv) if kv[0].data_type() == &DataType::Utf8
            ),
            _ => false,
        };
        if fits {
            Ok(types.to_vec())
        } else {
            Err(refuse(self.name(), types))
        }
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(match types {
            [_, DataType::List(v)] if self.to_map => {
                let value =
                    SqlType::from_arrow(v.data_type()).map_err(|_| refuse(self.name(), types))?;
                SqlType::Map(Box::new(SqlType::String), Box::new(value)).to_arrow()
            }
            [DataType::Map(entries, _), _] => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return Err(refuse(self.name(), types));
                };
                let item = DataType::Struct(entry_fields(kv[1].data_type()));
                DataType::List(Arc::new(Field::new("item", item, true)))
            }
            _ => return Err(refuse(self.name(), types)),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let first = args.args[0].to_array(rows)?;
        let second = args.args[1].to_array(rows)?;
        let ret = args.return_field.data_type().clone();
        let out = if self.to_map {
            as_map(first.as_list::<i32>(), second.as_list::<i32>(), &ret)?
        } else {
            entries(first.as_map(), second.as_boolean(), &ret)?
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn as_map(keys: &ListArray, values: &ListArray, ret: &DataType) -> Result<ArrayRef> {
    let DataType::Map(entries_field, _) = ret else {
        return Err(refuse("as_map", std::slice::from_ref(ret)));
    };
    let DataType::Struct(kv) = entries_field.data_type() else {
        return Err(refuse("as_map", std::slice::from_ref(ret)));
    };
    let key_texts = keys.values().as_string::<i32>();
    let (mut key_at, mut value_at) = (Vec::new(), Vec::new());
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(keys.len());
    for row in 0..keys.len() {
        let usable = keys.is_valid(row) && values.is_valid(row);
        valid.push(usable);
        if usable {
            let (k0, k1) = (keys.value_offsets()[row], keys.value_offsets()[row + 1]);
            let v0 = values.value_offsets()[row];
            let n = (k1 - k0).min(values.value_offsets()[row + 1] - v0);
            // Where each key of this row went, so that a repeated key costs no search.
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for j in 0..n {
                let k = (k0 + j) as usize;
                if key_texts.is_null(k) {
                    continue;
                }
                // A repeated key keeps its last value, at the place it first had.
                match seen.get(key_texts.value(k)) {
                    Some(&p) => value_at[p] = (v0 + j) as u32,
                    None => {
                        seen.insert(key_texts.value(k), key_at.len());
                        key_at.push(k as u32);
                        value_at.push((v0 + j) as u32);
                    }
                }
            }
        }
        offsets.push(i32::try_from(key_at.len()).unwrap_or(i32::MAX));
    }
    let k = take(keys.values(), &UInt32Array::from(key_at), None)?;
    let v = take(values.values(), &UInt32Array::from(value_at), None)?;
    let entries = StructArray::try_new(kv.clone(), vec![k, v], None)?;
    Ok(Arc::new(MapArray::try_new(
        entries_field.clone(),
        OffsetBuffer::new(offsets.into()),
        entries,
        Some(NullBuffer::from(valid)),
        false,
    )?))
}

fn entries(
    maps: &MapArray,
    sorted: &datafusion::arrow::array::BooleanArray,
    ret: &DataType,
) -> Result<ArrayRef> {
    let DataType::List(item) = ret else {
        return Err(refuse("entries", std::slice::from_ref(ret)));
    };
    let DataType::Struct(fields) = item.data_type() else {
        return Err(refuse("entries", std::slice::from_ref(ret)));
    };
    let keys = maps.keys().as_string::<i32>();
    let mut order: Vec<u32> = Vec::new();
    let mut offsets = vec![0i32];
    for row in 0..maps.len() {
        if maps.is_valid(row) {
            let (s, e) = (maps.value_offsets()[row], maps.value_offsets()[row + 1]);
            let mut at: Vec<u32> = (s as u32..e as u32).collect();
            if sorted.is_valid(row) && sorted.value(row) {
                at.sort_by(|a, b| keys.value(*a as usize).cmp(keys.value(*b as usize)));
            }
            order.extend(at);
        }
        offsets.push(i32::try_from(order.len()).unwrap_or(i32::MAX));
    }
    let order = UInt32Array::from(order);
    let k = take(maps.keys(), &order, None)?;
    let v = take(maps.values(), &order, None)?;
    let structs = StructArray::try_new(fields.clone(), vec![k, v], None)?;
    Ok(Arc::new(ListArray::try_new(
        item.clone(),
        OffsetBuffer::new(offsets.into()),
        Arc::new(structs),
        maps.nulls().cloned(),
    )?))
}
