//! Join queries an engine whose queries outlive the process (a server's) refuses, and runs in memory.

use std::sync::Arc;

use eddy_runtime::{Engine, MemoryTopics};

const SOURCES: &str = "CREATE STREAM readings (car STRING KEY, speed DOUBLE) WITH (kafka_topic='readings', format='JSON', partitions=1);
CREATE TABLE cars (id STRING PRIMARY KEY, model STRING) WITH (kafka_topic='cars', format='JSON', partitions=1);";

const PER_MODEL: &str = "CREATE TABLE per_model AS SELECT model, COUNT(*) AS n FROM readings r JOIN cars c ON r.car = c.id GROUP BY model;";

fn run(engine: &mut Engine, sql: &str) -> Result<(), String> {
    for stmt in eddy_sql::parse(sql).map_err(|e| e.to_string())? {
        engine
            .execute(&stmt, &Default::default())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn an_aggregation_over_a_join_is_refused_where_state_must_outlive_the_process() {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new()));
    run(&mut engine, SOURCES).unwrap();
    let e = run(&mut engine, PER_MODEL).unwrap_err();
    assert!(
        e.contains("Aggregations over joins are not supported yet"),
        "{e}"
    );
    assert!(engine.catalog().get("PER_MODEL").is_none());
    // The join itself is a query like any other.
    run(
        &mut engine,
        "CREATE STREAM enriched AS SELECT r.car AS car, speed, model FROM readings r JOIN cars c ON r.car = c.id;",
    )
    .unwrap();
    assert_eq!(engine.queries().len(), 1);
}

#[test]
fn an_aggregation_over_a_join_runs_in_memory() {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new())).with_volatile_state();
    run(&mut engine, SOURCES).unwrap();
    run(&mut engine, PER_MODEL).unwrap();
    assert_eq!(engine.queries().len(), 1);
}
