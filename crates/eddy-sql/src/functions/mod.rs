//! ksqlDB's functions: its names for DataFusion's built-ins (registered as aliases) and the functions
//! DataFusion lacks or implements differently.

pub mod cast;
mod chr;
pub mod collect;
pub mod datetime;
mod explode;
pub mod geo;
pub mod identity;
mod initcap;
pub mod json;
pub mod moments;
pub mod substring;
pub mod sum_list;

use std::sync::Arc;

pub use explode::explode;

use datafusion::arrow::array::{AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::SessionState;

/// `(ksqlDB name, DataFusion name)` for functions DataFusion has under another name.
const ALIASES: &[(&str, &str)] = &[
    ("ucase", "upper"),
    ("lcase", "lower"),
    ("len", "character_length"),
    ("array_contains", "array_has"),
    // DataFusion's `ifnull` (`nvl`) takes scalars only; ksqlDB's takes any type.
    ("ifnull", "coalesce"),
];

/// Registers ksqlDB's functions and names on the session's function registry.
pub fn register(state: &mut SessionState) {
    // Registration only fails for invalid names; ours are constants.
    for udf in [
        ScalarUDF::from(cast::KsqlCast::default()),
        ScalarUDF::from(identity::Identity::new("as_value")),
        json::extractjsonfield(),
        datetime::parse_date(),
        datetime::format_date(),
        datetime::parse_timestamp(),
        ScalarUDF::from(datetime::FormatTimestamp::over_timestamps()),
        datetime::stringtotimestamp(),
        ScalarUDF::from(datetime::FormatTimestamp::over_millis()),
        ScalarUDF::from(geo::GeoDistance::default()),
        ScalarUDF::from(substring::Substring::default()),
        ScalarUDF::from(initcap::InitCap::default()),
        ScalarUDF::from(chr::Chr::default()),
    ] {
        let _ = state.register_udf(Arc::new(udf));
    }
    for udaf in collect::all()
        .into_iter()
        .chain(moments::all())
        .chain([sum_list::sum_list()])
    {
        let _ = state.register_udaf(Arc::new(udaf));
    }
    for (alias, target) in ALIASES {
        let Some(udf) = state.scalar_functions().get(*target).cloned() else {
            continue;
        };
        let aliased = Arc::new(udf.as_ref().clone().with_aliases([*alias]));
        let _ = state.register_udf(aliased);
    }
}

/// The number of rows a call is evaluated over (1 when every argument is a constant).
fn rows_of(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// A string argument as `rows` strings (a constant repeated).
fn strings_of(v: &ColumnarValue, rows: usize) -> datafusion::common::Result<StringArray> {
    let a = cast(&v.to_array(rows)?, &DataType::Utf8)?;
    Ok(a.as_string::<i32>().clone())
}
