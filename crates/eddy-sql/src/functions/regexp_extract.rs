//! ksqlDB's `REGEXP_EXTRACT(pattern, text[, group])` (the first match, or its group) and
//! `REGEXP_EXTRACT_ALL(pattern, text[, group])` (every match, or its group); a pattern that does not
//! compile or a group it lacks gives NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use super::patterns::Patterns;
use super::{overloaded, rows_of, strings_of};

/// Both functions, for registration.
pub fn all() -> Vec<ScalarUDF> {
    [false, true].into_iter().map(extract).collect()
}

fn extract(every: bool) -> ScalarUDF {
    let (name, ret) = if every {
        (
            "regexp_extract_all",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        )
    } else {
        ("regexp_extract", DataType::Utf8)
    };
    let text = DataType::Utf8;
    overloaded(
        name,
        vec![
            vec![text.clone(), text.clone()],
            vec![text.clone(), text, DataType::Int32],
        ],
        ret,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let patterns = strings_of(&args[0], rows)?;
            let texts = strings_of(&args[1], rows)?;
            let groups = match args.get(2) {
                Some(g) => Some(cast(&g.to_array(rows)?, &DataType::Int64)?),
                None => None,
            };
            let group = |i: usize| match &groups {
                None => Some(0),
                Some(g) => {
                    let g = g.as_primitive::<Int64Type>();
                    g.is_valid(i)
                        .then(|| usize::try_from(g.value(i)).ok())
                        .flatten()
                }
            };
            let mut compiled = Patterns::default();
            let row = |i: usize, compiled: &mut Patterns| {
                let (p, t, g) = (
                    patterns.is_valid(i).then(|| patterns.value(i)),
                    texts.is_valid(i).then(|| texts.value(i)),
                    group(i),
                );
                let (p, t, g) = (p?, t?, g?);
                let r = compiled.get(p)?.clone();
                (g < r.captures_len()).then_some((r, t, g))
            };
            if every {
                let mut out = ListBuilder::new(StringBuilder::new());
                for i in 0..rows {
                    match row(i, &mut compiled) {
                        Some((r, t, g)) => out.append_value(
                            r.captures_iter(t)
                                .map(|c| c.get(g).map(|m| m.as_str().to_string())),
                        ),
                        None => out.append_null(),
                    }
                }
                return Ok(ColumnarValue::Array(Arc::new(out.finish())));
            }
            let mut out = StringBuilder::new();
            for i in 0..rows {
                out.append_option(
                    row(i, &mut compiled).and_then(|(r, t, g)| {
                        r.captures(t)?.get(g).map(|m| m.as_str().to_string())
                    }),
                );
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}
