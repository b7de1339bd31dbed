//! A call's features, in the three shapes a call may give them: one DOUBLE argument per feature in the
//! card's order; one STRUCT whose fields are named after the card's features (any order, other fields
//! ignored); or one ARRAY of DOUBLEs in the card's order. Read into the row-major buffer a model
//! scores, with a mask of the rows that have no score (a NULL feature, or an array of another length).

use eddy_udf::arrow_array::cast::AsArray;
use eddy_udf::arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use eddy_udf::arrow_array::{Array, ArrayRef, StructArray};
use eddy_udf::arrow_schema::DataType;
use eddy_udf::{Error, Result};

/// The rows' features (row-major, `names.len()` per row) and which rows have none.
pub struct Gathered {
    pub values: Vec<f32>,
    pub missing: Vec<bool>,
}

/// Checks, when a call is planned, that the argument types give the card's features: as many
/// numbers as it lists, a struct with a field for each, or an array of numbers.
pub fn check(types: &[DataType], names: &[String], model: &str) -> Result<()> {
    match types {
        [DataType::Struct(fields)] => {
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| !fields.iter().any(|f| f.name().eq_ignore_ascii_case(n)))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(Error(format!(
                    "model {model} needs the features {}; the struct lacks {}",
                    names.join(", "),
                    missing.join(", ")
                )));
            }
            for f in fields.iter() {
                let needed = names.iter().any(|n| f.name().eq_ignore_ascii_case(n));
                if needed && !numeric(f.data_type()) {
                    return Err(Error(format!(
                        "model {model}: feature {} is {}, not a number",
                        f.name(),
                        f.data_type()
                    )));
                }
            }
            Ok(())
        }
        [DataType::List(item)] if numeric(item.data_type()) => Ok(()),
        columns if columns.len() == names.len() => Ok(()),
        columns => Err(Error(format!(
            "model {model} takes {} features, in this order: {}; the call gives {}",
            names.len(),
            names.join(", "),
            columns.len()
        ))),
    }
}

/// Whether values of this type are read as features (NULL, as an argument's type before planning
/// picks one, is).
fn numeric(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Float64 | DataType::Float32 | DataType::Int32 | DataType::Int64 | DataType::Null
    )
}

/// Reads the features of `rows` rows from the call's feature arguments.
pub fn gather(args: &[ArrayRef], names: &[String], rows: usize) -> Result<Gathered> {
    let width = names.len();
    let mut out = Gathered {
        values: vec![0f32; rows * width],
        missing: vec![false; rows],
    };
    match args {
        [one] if matches!(one.data_type(), DataType::Struct(_)) => {
            let s: &StructArray = one.as_struct();
            for (j, name) in names.iter().enumerate() {
                let column = s
                    .column_names()
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case(name))
                    .map(|i| s.column(i))
                    .ok_or_else(|| Error(format!("the features lack {name}")))?;
                out.column(j, column, width)?;
            }
            for r in 0..rows {
                out.missing[r] |= s.is_null(r);
            }
        }
        [one] if matches!(one.data_type(), DataType::List(_)) => {
            let lists = one.as_list::<i32>();
            let items = lists.values();
            let doubles = items.as_primitive_opt::<Float64Type>();
            let offsets = lists.value_offsets();
            for r in 0..rows {
                let (start, end) = (offsets[r] as usize, offsets[r + 1] as usize);
                if lists.is_null(r) || end - start != width {
                    out.missing[r] = true;
                    continue;
                }
                let row = &mut out.values[r * width..(r + 1) * width];
                match doubles {
                    // DOUBLEs (what ARRAY[...] of DOUBLE columns makes): read as a slice.
                    Some(d) if d.null_count() == 0 => {
                        for (slot, v) in row.iter_mut().zip(&d.values()[start..end]) {
                            *slot = *v as f32;
                        }
                    }
                    _ => {
                        for (j, slot) in row.iter_mut().enumerate() {
                            match number(items, start + j)? {
                                Some(v) => *slot = v,
                                None => out.missing[r] = true,
                            }
                        }
                    }
                }
            }
        }
        columns => {
            if columns.len() != width {
                return Err(Error(format!(
                    "the model takes {width} features; the call gives {}",
                    columns.len()
                )));
            }
            for (j, column) in columns.iter().enumerate() {
                out.column(j, column, width)?;
            }
        }
    }
    Ok(out)
}

impl Gathered {
    /// Feature `j` of every row from `column`.
    fn column(&mut self, j: usize, column: &ArrayRef, width: usize) -> Result<()> {
        if let Some(doubles) = column.as_primitive_opt::<Float64Type>() {
            for (r, v) in doubles.iter().enumerate() {
                match v {
                    Some(v) => self.values[r * width + j] = v as f32,
                    None => self.missing[r] = true,
                }
            }
            return Ok(());
        }
        for r in 0..column.len() {
            match number(column, r)? {
                Some(v) => self.values[r * width + j] = v,
                None => self.missing[r] = true,
            }
        }
        Ok(())
    }
}

/// Element `i` of a numeric array, as the model's f32.
fn number(values: &ArrayRef, i: usize) -> Result<Option<f32>> {
    if values.is_null(i) {
        return Ok(None);
    }
    Ok(Some(match values.data_type() {
        DataType::Float64 => values.as_primitive::<Float64Type>().value(i) as f32,
        DataType::Float32 => values.as_primitive::<Float32Type>().value(i),
        DataType::Int32 => values.as_primitive::<Int32Type>().value(i) as f32,
        DataType::Int64 => values.as_primitive::<Int64Type>().value(i) as f32,
        other => return Err(Error(format!("a feature of type {other} is not a number"))),
    }))
}
