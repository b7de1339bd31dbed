//! `ksql_cast(value, 'TYPE')`: ksqlDB's CAST where DataFusion's differs — to and from ARRAY, MAP and
//! STRUCT (struct fields matched by name), and values rendered as strings the way ksqlDB (Java) does.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, ListArray, MapArray, StringBuilder, StructArray, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int32Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::java::format_double;
use crate::parser::{COMPLEX_CAST, parse_type};
use crate::types::SqlType;

/// The `ksql_cast` function; the parser turns `CAST(e AS <complex type>)` into a call of it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KsqlCast {
    signature: Signature,
}

impl Default for KsqlCast {
    fn default() -> Self {
        KsqlCast {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for KsqlCast {
    fn name(&self) -> &str {
        COMPLEX_CAST
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("{COMPLEX_CAST} takes its type from its second argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let target = match args.scalar_arguments.get(1) {
            Some(Some(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)))) => {
                parse_type(t)
                    .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?
            }
            _ => return plan_err!("{COMPLEX_CAST} needs a type name as its second argument"),
        };
        Ok(Arc::new(Field::new(self.name(), target.to_arrow(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let to = args.return_field.data_type();
        match &args.args[0] {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(cast_value(a, to)?)),
            ColumnarValue::Scalar(s) => {
                let a = cast_value(&s.to_array()?, to)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?))
            }
        }
    }
}

/// Whether ksqlDB can cast `from` to `to`; the error is ksqlDB's message.
pub fn check(from: &DataType, to: &DataType) -> std::result::Result<(), String> {
    let kind = |t: &DataType| match t {
        DataType::List(_) | DataType::LargeList(_) => 1,
        DataType::Map(_, _) => 2,
        DataType::Struct(_) => 3,
        _ => 0,
    };
    let ok = match (from, to) {
        (DataType::Null, _) => true,
        (_, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => true,
        (DataType::List(f), DataType::List(t)) => check(f.data_type(), t.data_type()).is_ok(),
        (DataType::Map(f, _), DataType::Map(t, _)) => {
            let (DataType::Struct(f), DataType::Struct(t)) = (f.data_type(), t.data_type()) else {
                return Err("malformed map type".into());
            };
            f.iter()
                .zip(t.iter())
                .all(|(f, t)| check(f.data_type(), t.data_type()).is_ok())
        }
        (DataType::Struct(f), DataType::Struct(t)) => t.iter().all(|t| {
            field(f, t.name()).is_none_or(|(_, f)| check(f.data_type(), t.data_type()).is_ok())
        }),
        (f, t) => kind(f) == 0 && kind(t) == 0,
    };
    if ok {
        return Ok(());
    }
    let name = |t: &DataType| {
        SqlType::from_arrow(t)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    Err(format!(
        "Cast of {} to {} is not supported",
        name(from),
        name(to)
    ))
}

/// A struct field by name, exactly or else ignoring case.
fn field<'a>(fields: &'a Fields, name: &str) -> Option<(usize, &'a FieldRef)> {
    fields.find(name).or_else(|| {
        fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.name().eq_ignore_ascii_case(name))
    })
}

/// Whether ksqlDB's cast from `from` to `to` differs from DataFusion's (so it needs `ksql_cast`).
pub fn differs(from: &DataType, to: &DataType) -> bool {
    let to_string = matches!(
        to,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    );
    let complex_or_double = matches!(
        from,
        DataType::List(_) | DataType::Map(_, _) | DataType::Struct(_) | DataType::Float64
    );
    // ksqlDB reads a date with a missing day (`'1970-01'`), which DataFusion's cast refuses.
    let text_to_date = *from == DataType::Utf8 && *to == DataType::Date32;
    (to_string && complex_or_double)
        || (*from == DataType::Int64 && *to == DataType::Int32)
        || text_to_date
}

/// Casts an array to a type with ksqlDB's rules.
pub fn cast_value(a: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if let Err(e) = check(a.data_type(), to) {
        return exec_err!("{e}");
    }
    Ok(match (a.data_type(), to) {
        (DataType::Null, _) => new_null_array(to, a.len()),
        (
            DataType::List(_) | DataType::Map(_, _) | DataType::Struct(_) | DataType::Float64,
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8,
        ) => cast(&java_strings(a)?, to)?,
        (DataType::List(_), DataType::List(f)) => {
            let l = a.as_list::<i32>();
            let values = cast_value(l.values(), f.data_type())?;
            Arc::new(ListArray::try_new(
                f.clone(),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?)
        }
        (DataType::Map(_, _), DataType::Map(entries, sorted)) => {
            let m = a.as_map();
            let DataType::Struct(fields) = entries.data_type() else {
                return exec_err!("malformed map type {to}");
            };
            let keys = cast_value(m.keys(), fields[0].data_type())?;
            let values = cast_value(m.values(), fields[1].data_type())?;
            let entries_array = StructArray::try_new(fields.clone(), vec![keys, values], None)?;
            Arc::new(MapArray::try_new(
                entries.clone(),
                m.offsets().clone(),
                entries_array,
                m.nulls().cloned(),
                *sorted,
            )?)
        }
        (DataType::Struct(from), DataType::Struct(fields)) => {
            let s = a.as_struct();
            let columns = fields
                .iter()
                .map(|t| match field(from, t.name()) {
                    Some((i, _)) => cast_value(s.column(i), t.data_type()),
                    None => Ok(new_null_array(t.data_type(), a.len())),
                })
                .collect::<Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new(
                fields.clone(),
                columns,
                s.nulls().cloned(),
            )?)
        }
        // ksqlDB reads an ISO date, a missing day being the first (`'1970-01'`).
        (DataType::Utf8, DataType::Date32) => {
            let epoch = chrono::NaiveDate::default();
            Arc::new(
                a.as_string::<i32>()
                    .iter()
                    .map(|t| {
                        let d = crate::java::parse_date(t?.trim(), "%Y-%m-%d")
                            .or_else(|| crate::java::parse_date(t?.trim(), "%Y-%m"))?;
                        i32::try_from((d - epoch).num_days()).ok()
                    })
                    .collect::<datafusion::arrow::array::Date32Array>(),
            )
        }
        // Java narrows integers by dropping high bits.
        (DataType::Int64, DataType::Int32) => Arc::new(
            a.as_primitive::<Int64Type>()
                .unary::<_, Int32Type>(|v| v as i32),
        ),
        _ => cast(a, to)?,
    })
}

/// Every value of an array as ksqlDB shows it in a string.
fn java_strings(a: &ArrayRef) -> Result<ArrayRef> {
    let mut out = StringBuilder::new();
    let mut text = String::new();
    for i in 0..a.len() {
        if a.is_null(i) {
            out.append_null();
        } else {
            text.clear();
            java_string(a, i, &mut text)?;
            out.append_value(&text);
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Appends one value as Java renders it: `[1, 2]`, `{k=v}`, `Struct{F=1}` (null fields left out).
fn java_string(a: &dyn Array, i: usize, out: &mut String) -> Result<()> {
    if a.is_null(i) {
        out.push_str("null");
        return Ok(());
    }
    match a.data_type() {
        DataType::Float64 => out.push_str(&format_double(
            a.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(i),
        )),
        DataType::List(_) => {
            let items = a.as_list::<i32>().value(i);
            out.push('[');
            for j in 0..items.len() {
                if j > 0 {
                    out.push_str(", ");
                }
                java_string(&items, j, out)?;
            }
            out.push(']');
        }
        DataType::Map(_, _) => {
            let entries = a.as_map().value(i);
            out.push('{');
            for j in 0..entries.len() {
                if j > 0 {
                    out.push_str(", ");
                }
                java_string(entries.column(0), j, out)?;
                out.push('=');
                java_string(entries.column(1), j, out)?;
            }
            out.push('}');
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            out.push_str("Struct{");
            let mut first = true;
            for (f, column) in fields.iter().zip(s.columns()) {
                if column.is_null(i) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(f.name());
                out.push('=');
                java_string(column, i, out)?;
            }
            out.push('}');
        }
        _ => {
            let formatter = ArrayFormatter::try_new(a, &FormatOptions::default())?;
            out.push_str(&formatter.value(i).to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};

    #[test]
    fn complex_values_render_like_ksqldb() {
        let s: ArrayRef = Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("F0", DataType::Int32, true)),
                Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("f1", DataType::Float64, true)),
                Arc::new(datafusion::arrow::array::Float64Array::from(vec![
                    3.0, 1e10,
                ])) as ArrayRef,
            ),
        ]));
        let out = cast_value(&s, &DataType::Utf8).unwrap();
        let out = out.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(out.value(0), "Struct{F0=1,f1=3.0}");
        assert_eq!(out.value(1), "Struct{f1=1.0E10}");
    }

    #[test]
    fn structs_cast_by_field_name_and_primitives_do_not_become_arrays() {
        let s: ArrayRef = Arc::new(StructArray::from(vec![(
            Arc::new(Field::new("f0", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![7])) as ArrayRef,
        )]));
        let to = DataType::Struct(Fields::from(vec![
            Field::new("F0", DataType::Utf8, true),
            Field::new("F3", DataType::Utf8, true),
        ]));
        let out = cast_value(&s, &to).unwrap();
        let out = out.as_struct();
        assert_eq!(out.column(0).as_string::<i32>().value(0), "7");
        assert!(out.column(1).is_null(0));
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        assert_eq!(
            check(&DataType::Utf8, &list).unwrap_err(),
            "Cast of STRING to ARRAY<INTEGER> is not supported"
        );
    }
}
