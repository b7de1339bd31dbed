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

/// Plans `query` over `sources` and returns its pipeline.
fn pipeline(sources: &[&str], query: &str) -> Arc<eddy_runtime::Pipeline> {
    let mut all = sources.to_vec();
    all.push(query);
    let (engine, id) = crate::common::engine_with(&all);
    engine.query(&id).expect("query").pipeline.clone()
}

fn record(key: &str, value: &str, offset: i64) -> eddy_runtime::Record {
    eddy_runtime::Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        timestamp: 1_700_000_000_000,
        partition: 0,
        offset,
    }
}

#[test]
fn a_stream_joined_on_a_value_is_placed_where_the_tables_producers_put_that_key() {
    use eddy_runtime::partitioner::partition_for;
    let tables = [
        "CREATE STREAM pings (id STRING KEY, car INT) WITH (kafka_topic='pings', format='JSON', partitions=4);",
        "CREATE TABLE cars (id INT PRIMARY KEY, model STRING) WITH (kafka_topic='cars', key_format='KAFKA', value_format='JSON', partitions=4);",
    ];
    let p = pipeline(
        &tables,
        "CREATE STREAM o AS SELECT p.car AS car, model FROM pings p JOIN cars c ON p.car = c.id;",
    );
    let plan = p.plan.join.as_ref().expect("a join");
    assert!(plan.left.repartition && !plan.right.repartition);
    let records = [
        record(r#""a""#, r#"{"CAR": 1}"#, 0),
        record(r#""b""#, r#"{"CAR": 2}"#, 1),
        record(r#""c""#, "not json", 2),
        record(r#""d""#, r#"{"CAR": null}"#, 3),
    ];
    // A KAFKA INT key is 4 big-endian bytes; a record that cannot be placed stays in 0.
    let want = [
        partition_for(&1i32.to_be_bytes(), 8),
        partition_for(&2i32.to_be_bytes(), 8),
        0,
        0,
    ];
    assert_eq!(p.placements(0, &records, 8).unwrap(), want);
    assert_ne!(
        want[0], want[1],
        "the two values should land apart for this test to mean much"
    );

    // Keyed by the join column in the table's format: read as it is.
    let p = pipeline(
        &[
            "CREATE STREAM pings (car INT KEY, v INT) WITH (kafka_topic='pings', key_format='KAFKA', value_format='JSON', partitions=4);",
            tables[1],
        ],
        "CREATE STREAM o AS SELECT p.car AS car, model FROM pings p JOIN cars c ON p.car = c.id;",
    );
    let plan = p.plan.join.as_ref().expect("a join");
    assert!(!plan.left.repartition && !plan.right.repartition);

    // Two streams keyed in different formats: the right is placed by the left's (JSON) format.
    let p = pipeline(
        &[
            "CREATE STREAM l (id STRING KEY, v INT) WITH (kafka_topic='l', key_format='JSON', value_format='JSON', partitions=2);",
            "CREATE STREAM r (id STRING KEY, w INT) WITH (kafka_topic='r', key_format='KAFKA', value_format='JSON', partitions=2);",
        ],
        "CREATE STREAM o AS SELECT l.id AS id, v, w FROM l JOIN r WITHIN 1 MINUTE ON l.id = r.id;",
    );
    let plan = p.plan.join.as_ref().expect("a join");
    assert!(!plan.left.repartition && plan.right.repartition);
    let placed = p
        .placements(1, &[record("x-1", r#"{"W": 1}"#, 0)], 16)
        .unwrap();
    assert_eq!(placed, [partition_for(br#""x-1""#, 16)]);
}

#[test]
fn a_group_is_placed_by_its_values_in_eddys_own_encoding() {
    use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
    use eddy_runtime::partitioner::partition_for;
    let p = pipeline(
        &[
            "CREATE STREAM pings (id STRING KEY, car INT, zone STRING) WITH (kafka_topic='pings', format='JSON', partitions=4);",
        ],
        "CREATE TABLE counts AS SELECT car, zone, COUNT(*) AS n FROM pings GROUP BY car, zone;",
    );
    let records = [
        record(r#""a""#, r#"{"CAR": 1, "ZONE": "n"}"#, 0),
        record(r#""b""#, r#"{"CAR": 2, "ZONE": null}"#, 1),
        record(r#""c""#, "not json", 2),
    ];
    // A version byte, then per value a presence byte and its bytes (a string with its length).
    let placed = |car: i32, zone: Option<&str>| {
        let columns: [ArrayRef; 2] = [
            Arc::new(Int32Array::from(vec![car])),
            Arc::new(StringArray::from(vec![zone])),
        ];
        let mut bytes = Vec::new();
        eddy_runtime::state_row::encode(&columns, 0, &mut bytes).unwrap();
        assert_eq!(&bytes[..6], [1, 1, 0, 0, 0, car as u8]);
        partition_for(&bytes, 16)
    };
    let want = [placed(1, Some("n")), placed(2, None), 0];
    assert_eq!(p.placements(0, &records, 16).unwrap(), want);
}
