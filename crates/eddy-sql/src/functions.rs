//! ksqlDB's names for DataFusion's built-in functions, registered as aliases.

use std::sync::Arc;

use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::SessionState;

/// `(ksqlDB name, DataFusion name)` for functions DataFusion has under another name.
const ALIASES: &[(&str, &str)] = &[
    ("ucase", "upper"),
    ("lcase", "lower"),
    ("len", "character_length"),
    ("array_contains", "array_has"),
];

/// Registers ksqlDB's names on the session's function registry.
pub fn register(state: &mut SessionState) {
    for (alias, target) in ALIASES {
        if state.scalar_functions().contains_key(*alias) {
            continue;
        }
        let Some(udf) = state.scalar_functions().get(*target).cloned() else {
            continue;
        };
        let aliased = Arc::new(udf.as_ref().clone().with_aliases([*alias]));
        // Registration only fails for invalid names; ours are constants.
        let _ = state.register_udf(aliased);
    }
}
