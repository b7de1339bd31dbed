//! ksqlDB's functions: its names for DataFusion's built-ins (registered as aliases) and the functions
//! DataFusion lacks or implements differently.

pub mod cast;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

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
    let _ = state.register_udf(Arc::new(ScalarUDF::from(cast::KsqlCast::default())));
    for (alias, target) in ALIASES {
        let Some(udf) = state.scalar_functions().get(*target).cloned() else {
            continue;
        };
        let aliased = Arc::new(udf.as_ref().clone().with_aliases([*alias]));
        let _ = state.register_udf(aliased);
    }
}
