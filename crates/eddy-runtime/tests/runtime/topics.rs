//! The topics statements create: their replication factor from `REPLICAS`, else the statement's
//! `ksql.sink.replicas`.

use std::sync::Arc;

use eddy_runtime::{Engine, MemoryTopics, TopicAdmin};

fn run(engine: &mut Engine, text: &str, props: &[(&str, &str)]) -> eddy_common::Result<()> {
    let props = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for stmt in eddy_sql::parse(text)? {
        engine.execute(&stmt, &props)?;
    }
    Ok(())
}

#[test]
fn created_topics_take_replicas_then_ksql_sink_replicas() {
    let topics = Arc::new(MemoryTopics::new());
    let mut engine = Engine::new(topics.clone()).with_volatile_state();
    let three = [("ksql.sink.replicas", "3")];
    run(
        &mut engine,
        "CREATE STREAM a (id INT KEY, v INT) WITH (kafka_topic='a', value_format='JSON', partitions=2);",
        &three,
    )
    .unwrap();
    run(&mut engine, "CREATE STREAM b AS SELECT * FROM a;", &three).unwrap();
    run(
        &mut engine,
        "CREATE STREAM c WITH (replicas=2) AS SELECT * FROM a;",
        &three,
    )
    .unwrap();
    run(&mut engine, "CREATE STREAM d AS SELECT * FROM a;", &[]).unwrap();
    let replicas = |name: &str| {
        topics
            .list_topics()
            .unwrap()
            .into_iter()
            .find(|t| t.name == name)
            .map(|t| t.replicas)
    };
    assert_eq!(replicas("a"), Some(3));
    assert_eq!(replicas("B"), Some(3));
    assert_eq!(replicas("C"), Some(2));
    assert_eq!(replicas("D"), Some(1));
    let e = run(
        &mut engine,
        "CREATE STREAM e AS SELECT * FROM a;",
        &[("ksql.sink.replicas", "0")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("ksql.sink.replicas"), "{e}");
}
