//! The benchmarks' queries, planned on an engine over in-memory topics.

use std::sync::Arc;

use eddy_runtime::{Engine, MemoryTopics, Outcome};

/// An engine over in-memory topics, its state kept in the process only (per-record emission unless
/// a pipeline is made per commit), that ran `statements`; and the id of the last query they made.
pub fn planned(statements: &[&str]) -> (Engine, String) {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new())).with_volatile_state();
    let id = run(&mut engine, statements);
    (engine, id)
}

/// Runs `statements` on `engine`; the id of the last query they made.
pub fn run(engine: &mut Engine, statements: &[&str]) -> String {
    let mut id = String::new();
    for sql in statements {
        for s in eddy_sql::parse(sql).expect("parse") {
            if let Outcome::QueryCreated { query_id, .. } =
                engine.execute(&s, &Default::default()).expect("execute")
            {
                id = query_id;
            }
        }
    }
    id
}
