//! Helpers shared by the runtime's integration tests.

use std::sync::Arc;

use eddy_runtime::{Engine, MemoryTopics, Outcome};

/// An engine over in-memory topics that has run `statements`, with the id of the last query they
/// created.
pub fn engine_with(statements: &[&str]) -> (Engine, String) {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new())).with_volatile_state();
    let mut id = String::new();
    for text in statements {
        for stmt in eddy_sql::parse(text).expect("parse") {
            if let Outcome::QueryCreated { query_id, .. } =
                engine.execute(&stmt, &Default::default()).expect("execute")
            {
                id = query_id;
            }
        }
    }
    (engine, id)
}

/// Each row of `batch` as its values' text joined by `separator`.
pub fn rows_text(batch: &datafusion::arrow::array::RecordBatch, separator: &str) -> Vec<String> {
    use datafusion::arrow::util::display::array_value_to_string;
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, r).unwrap())
                .collect::<Vec<_>>()
                .join(separator)
        })
        .collect()
}
