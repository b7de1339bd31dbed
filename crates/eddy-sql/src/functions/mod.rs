//! ksqlDB's functions: its names for DataFusion's built-ins (registered as aliases) and the functions
//! DataFusion lacks or implements differently.

mod array_contains;
mod array_join;
mod array_length;
mod array_or_map;
mod array_remove;
mod bytes;
pub mod cast;
mod checked;
mod chr;
pub mod collect;
mod convert_tz;
mod cube_explode;
pub mod date_arithmetic;
pub mod datetime;
mod elt;
mod epoch;
mod explode;
mod extreme;
mod filter;
mod generate_series;
pub mod geo;
pub mod identity;
mod initcap;
mod instr;
pub mod json;
mod json_path;
mod lambda_input;
mod log;
mod make_array;
mod map_union;
mod maps;
mod mask;
pub mod moments;
pub(crate) mod overloads;
mod pad;
mod patterns;
mod reduce;
pub mod reference;
mod regexp_extract;
mod sign;
mod split;
pub mod substring;
pub mod sum_list;
mod to_json_string;
mod transform;
mod url;

use std::sync::Arc;

pub use cube_explode::cube_explode;
pub use explode::explode;

use datafusion::arrow::array::{AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, HigherOrderUDF, ScalarFunctionImplementation, ScalarUDF, Signature,
    SimpleScalarUDF, TypeSignature, Volatility, create_udf,
};

use crate::types::SqlType;

use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::SessionState;

/// `(ksqlDB name, DataFusion name)` for functions DataFusion has under another name.
const ALIASES: &[(&str, &str)] = &[
    ("ucase", "upper"),
    ("lcase", "lower"),
    ("len", "character_length"),
    // DataFusion's `ifnull` (`nvl`) takes scalars only; ksqlDB's takes any type.
    ("ifnull", "coalesce"),
    ("slice", "array_slice"),
];

/// Registers ksqlDB's functions and names on the session's function registry.
pub fn register(state: &mut SessionState) {
    // Registration only fails for invalid names; ours are constants.
    for udf in [
        ScalarUDF::from(cast::KsqlCast::default()),
        ScalarUDF::from(identity::Identity::new("as_value")),
        datetime::parse_date(),
        datetime::format_date(),
        datetime::stringtodate(),
        datetime::datetostring(),
        datetime::parse_timestamp(),
        datetime::parse_time(),
        datetime::format_time(),
        convert_tz::convert_tz(),
        ScalarUDF::from(datetime::FormatTimestamp::over_timestamps()),
        datetime::stringtotimestamp(),
        ScalarUDF::from(datetime::FormatTimestamp::over_millis()),
        ScalarUDF::from(geo::GeoDistance::default()),
        ScalarUDF::from(substring::Substring::default()),
        ScalarUDF::from(initcap::InitCap::default()),
        ScalarUDF::from(chr::Chr::default()),
        ScalarUDF::from(to_json_string::ToJsonString::default()),
        ScalarUDF::from(array_join::ArrayJoin::default()),
        ScalarUDF::from(make_array::KsqlMakeArray::default()),
    ]
    .into_iter()
    .chain(json::all())
    .chain(date_arithmetic::all())
    .chain(epoch::all())
    .chain(bytes::all())
    .chain(split::all())
    .chain(extreme::all())
    .chain(maps::all())
    .chain(mask::all())
    .chain(pad::all())
    .chain(regexp_extract::all())
    .chain(elt::all())
    .chain(url::all())
    .chain([
        sign::sign(),
        log::log(),
        array_contains::array_contains(),
        array_remove::array_remove(),
        instr::instr(),
        map_union::map_union(),
        generate_series::generate_series(),
        array_length::array_length(),
    ]) {
        let _ = state.register_udf(Arc::new(udf));
    }
    for udaf in collect::all()
        .into_iter()
        .chain(moments::all())
        .chain([sum_list::sum_list()])
    {
        let _ = state.register_udaf(Arc::new(udaf));
    }
    for hof in [
        HigherOrderUDF::new_from_impl(transform::Transform::default()),
        HigherOrderUDF::new_from_impl(filter::Filter::default()),
        HigherOrderUDF::new_from_impl(reduce::Reduce::default()),
    ] {
        let _ = state.register_higher_order_function(Arc::new(hof));
    }
    for (alias, target) in ALIASES {
        let Some(udf) = state.scalar_functions().get(*target).cloned() else {
            continue;
        };
        let aliased = Arc::new(udf.as_ref().clone().with_aliases([*alias]));
        let _ = state.register_udf(aliased);
    }
    // Last, so that each ksqlDB name resolves to its checked form (GREATEST and LEAST resolve
    // their arguments themselves, reading text as dates and times where ksqlDB does).
    for doc in reference::reference()
        .iter()
        .filter(|d| d.kind == "SCALAR" && !matches!(d.name, "GREATEST" | "LEAST"))
    {
        let name = doc.name.to_ascii_lowercase();
        let Some(udf) = state.scalar_functions().get(&name).cloned() else {
            continue;
        };
        let taken = |n: &str| reference::find(n).is_some();
        let checked = ScalarUDF::from(checked::Checked::new(&name, udf.as_ref().clone(), &taken));
        let _ = state.register_udf(Arc::new(checked));
    }
}

/// ksqlDB's planning error for arguments that fit no signature of a built-in function.
pub(crate) fn refuse(name: &str, types: &[DataType]) -> DataFusionError {
    let types: Vec<String> = types
        .iter()
        .map(|t| match (t, SqlType::from_arrow(t)) {
            (DataType::Null, _) => "null".to_string(),
            (_, Ok(sql)) => sql.to_string(),
            (other, Err(_)) => other.to_string(),
        })
        .collect();
    DataFusionError::Plan(format!(
        "Function '{name}' does not accept parameters ({}).",
        types.join(", ")
    ))
}

/// A function with several fixed signatures (`forms`) and one result type, computed by `f`.
fn overloaded(
    name: &str,
    forms: Vec<Vec<DataType>>,
    ret: DataType,
    f: ScalarFunctionImplementation,
) -> ScalarUDF {
    let signature = Signature::one_of(
        forms.into_iter().map(TypeSignature::Exact).collect(),
        Volatility::Immutable,
    );
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(name, signature, ret, f))
}

/// A function `name(STRING) -> ret` computed by `f` over the argument's strings.
fn over_text(
    name: &str,
    ret: DataType,
    f: impl Fn(&StringArray) -> datafusion::arrow::array::ArrayRef + Send + Sync + 'static,
) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        ret,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let texts = strings_of(&args[0], rows_of(args))?;
            Ok(ColumnarValue::Array(f(&texts)))
        }),
    )
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
