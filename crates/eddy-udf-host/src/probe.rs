//! Asking a plugin function whether it accepts a first literal argument — a model reference, say —
//! without planning a query: an instance is created with that literal and NULLs of the other
//! parameters' types (none for a variadic one), as when a call is planned, and dropped.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray, new_null_array};
use datafusion::arrow::datatypes::DataType;
use eddy_sql::types::SqlType;
use serde_json::Value;

use crate::instance::Pool;
use crate::plugin::{Function, Plugin};

impl Plugin {
    /// Whether some overload of `function` (created with `config`) accepts `first` as its first
    /// argument; the plugin's reason when none does.
    pub fn accepts_first(
        self: &Arc<Self>,
        function: &Function,
        config: &Value,
        first: &str,
    ) -> Result<(), String> {
        let mut refusal = format!("function {} takes no arguments", function.name);
        for overload in &function.overloads {
            let mut constants: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![first]))];
            for (param, t) in overload.spec.params.iter().zip(&overload.params).skip(1) {
                if !param.variadic {
                    let arrow = match t {
                        SqlType::Struct(fields) if fields.is_empty() => DataType::Struct(
                            Vec::<datafusion::arrow::datatypes::Field>::new().into(),
                        ),
                        t => t.to_arrow(),
                    };
                    constants.push(new_null_array(&arrow, 1));
                }
            }
            match Pool::new(self.clone(), overload.index, config).create(&constants) {
                Ok(_) => return Ok(()),
                Err(e) => refusal = e.message,
            }
        }
        Err(refusal)
    }
}
