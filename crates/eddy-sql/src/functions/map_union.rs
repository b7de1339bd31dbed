//! ksqlDB's `MAP_UNION(a, b)`: the entries of both maps, the second map's value winning on a repeated
//! key; a NULL map counts as empty, and two NULL maps give NULL. Keys keep the first map's order, then
//! the second's new ones.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, MapArray, StructArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::refuse;

pub fn map_union() -> ScalarUDF {
    ScalarUDF::from(MapUnion {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct MapUnion {
    signature: Signature,
}

impl ScalarUDFImpl for MapUnion {
    fn name(&self) -> &str {
        "map_union"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [a @ DataType::Map(..), b] if a == b || b == &DataType::Null => {
                Ok(vec![a.clone(), a.clone()])
            }
            [DataType::Null, b @ DataType::Map(..)] => Ok(vec![b.clone(), b.clone()]),
            _ => Err(refuse(self.name(), types)),
        }
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (a, b) = (args.args[0].to_array(rows)?, args.args[1].to_array(rows)?);
        let (a, b) = (a.as_map(), b.as_map());
        let DataType::Map(field, _) = a.data_type() else {
            return exec_err!("map_union expects maps");
        };
        let converter = RowConverter::new(vec![SortField::new(a.keys().data_type().clone())])?;
        let (a_keys, b_keys) = (
            converter.convert_columns(&[a.keys().clone()])?,
            converter.convert_columns(&[b.keys().clone()])?,
        );
        // Per output entry: (which map, entry index).
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(rows);
        let mut at = HashMap::new();
        for row in 0..rows {
            at.clear();
            for (side, map, keys) in [(0, a, &a_keys), (1, b, &b_keys)] {
                if map.is_null(row) {
                    continue;
                }
                let bounds = map.value_offsets();
                for i in bounds[row] as usize..bounds[row + 1] as usize {
                    match at.get(&keys.row(i)) {
                        Some(p) => picks[*p] = (side, i),
                        None => {
                            at.insert(keys.row(i), picks.len());
                            picks.push((side, i));
                        }
                    }
                }
            }
            valid.push(a.is_valid(row) || b.is_valid(row));
            let Ok(end) = i32::try_from(picks.len()) else {
                return exec_err!("map_union: more than {} entries in a batch", i32::MAX);
            };
            offsets.push(end);
        }
        let keys = interleave(&[a.keys().as_ref(), b.keys().as_ref()], &picks)?;
        let values = interleave(&[a.values().as_ref(), b.values().as_ref()], &picks)?;
        let DataType::Struct(kv) = field.data_type() else {
            return exec_err!("map entries are a struct");
        };
        let entries = StructArray::try_new(kv.clone(), vec![keys, values], None)?;
        Ok(ColumnarValue::Array(Arc::new(MapArray::try_new(
            field.clone(),
            OffsetBuffer::new(offsets.into()),
            entries,
            Some(NullBuffer::from(valid)),
            false,
        )?)))
    }
}
