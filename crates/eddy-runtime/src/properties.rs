//! The properties a statement runs with (the server's, with a session's `SET`s and a request's
//! `streamsProperties` over them), by their ksqlDB names.

use std::collections::BTreeMap;

/// Session properties that change how statements execute.
pub type Properties = BTreeMap<String, String>;
