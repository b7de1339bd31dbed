//! Join queries: what an engine whose queries outlive the process (a server's) refuses, how it
//! splits an aggregation over joins, where sides and groups are placed.

use std::sync::Arc;

use eddy_runtime::changelog::input_position;
use eddy_runtime::{Engine, MemoryTopics, SplitPoint};

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
fn an_aggregation_over_a_join_of_tables_is_refused_where_state_must_outlive_the_process() {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new()));
    run(&mut engine, SOURCES).unwrap();
    run(
        &mut engine,
        "CREATE TABLE owners (id STRING PRIMARY KEY, car STRING) WITH (kafka_topic='owners', format='JSON', partitions=1);",
    )
    .unwrap();
    let e = run(
        &mut engine,
        "CREATE TABLE per_model_owners AS SELECT model, COUNT(*) AS n FROM owners o JOIN cars c ON o.car = c.id GROUP BY model;",
    )
    .unwrap_err();
    assert!(e.contains("join of tables"), "{e}");
    assert!(engine.catalog().get("PER_MODEL_OWNERS").is_none());
    // Over a stream-table join it is a query like any other.
    run(&mut engine, PER_MODEL).unwrap();
    assert_eq!(engine.queries().len(), 1);
}

/// The output rows of a durable aggregation (emitted per commit) as sorted text.
fn flushed(p: &eddy_runtime::Pipeline, mut rows: Vec<String>) -> Vec<String> {
    if let Some(f) = p.flush().unwrap() {
        rows.extend(shown(&f.batch));
    }
    rows.sort();
    rows
}

fn shown(batch: &datafusion::arrow::array::RecordBatch) -> Vec<String> {
    crate::common::rows_text(batch, "|")
}

#[test]
fn an_aggregation_over_a_join_split_in_two_counts_what_the_whole_query_counts() {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new()));
    run(&mut engine, SOURCES).unwrap();
    run(&mut engine, PER_MODEL).unwrap();
    let whole = engine.queries().values().next().unwrap().pipeline.clone();
    assert_eq!(whole.split_point(), Some(SplitPoint::Aggregation));
    let (joins, aggregation) = whole
        .split(3, "rows")
        .unwrap()
        .expect("split at the aggregation");
    assert!(aggregation.reads_joined_rows(0) && !joins.reads_joined_rows(0));
    assert_eq!(aggregation.inputs()[0].topic, "rows");
    let cars = [
        record(r#""a""#, r#"{"MODEL": "m1"}"#, 0),
        record(r#""b""#, r#"{"MODEL": "m2"}"#, 1),
        record(r#""c""#, r#"{"MODEL": "m1"}"#, 2),
    ];
    // Car d is unknown (the inner join drops it); one reading cannot be read.
    let readings: Vec<_> = ["a", "b", "a", "c", "d", "b", "a"]
        .iter()
        .enumerate()
        .map(|(i, car)| record(&format!("\"{car}\""), r#"{"SPEED": 1.5}"#, i as i64))
        .chain([record(r#""a""#, "not json", 7)])
        .collect();
    for p in [&whole, &joins] {
        p.process_input(1, &cars).unwrap();
    }
    let out = whole.process_input(0, &readings).unwrap();
    let want = flushed(&whole, shown(&out.batch));
    assert_eq!(want, ["m1|4", "m2|2"]);

    let handed = joins.process_input(0, &readings).unwrap();
    assert_eq!(
        handed.decode_errors.len(),
        1,
        "the reading that cannot be read"
    );
    // One record per reading that joined, in the partition its model hashes to, in an envelope
    // naming the reading.
    let internal = unwrapped(&handed, 0);
    let offsets: Vec<i64> = internal.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 5, 6]);
    let models = [0, 1, 0, 0, 1, 0];
    for (r, m) in internal.iter().zip(models) {
        assert_eq!(
            r.partition,
            internal[models.iter().position(|x| *x == m).unwrap()].partition
        );
    }
    let out = aggregation.process_input(0, &internal).unwrap();
    assert_eq!(flushed(&aggregation, shown(&out.batch)), want);
}

/// The records a split query's joins handed on (`handed`), as the rest of the query reads them
/// from the internal topic (enveloped, each of query input `input`, at its own offset).
fn unwrapped(handed: &eddy_runtime::ProcessedBatch, input: usize) -> Vec<eddy_runtime::Record> {
    use datafusion::arrow::array::AsArray;
    let values = handed.batch.column(0).as_binary::<i32>();
    let mut internal = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let (key, payload, position, offset) = eddy_runtime::envelope::open(v.unwrap()).unwrap();
        assert_eq!(key, None);
        assert_eq!(position, eddy_runtime::changelog::input_position(input, 0));
        assert!((0..3).contains(&handed.partition[i]));
        internal.push(eddy_runtime::Record {
            key: None,
            value: payload.map(<[u8]>::to_vec),
            timestamp: handed.rowtime[i],
            partition: handed.partition[i],
            offset,
            headers: Vec::new(),
        });
    }
    internal
}

#[test]
fn a_join_of_earlier_joins_rows_on_another_value_splits_the_query_there() {
    use eddy_runtime::partitioner::partition_for;
    let mut engine = Engine::new(Arc::new(MemoryTopics::new()));
    run(
        &mut engine,
        "CREATE TABLE cars (id STRING PRIMARY KEY, model STRING, owner STRING) WITH (kafka_topic='cars', key_format='KAFKA', value_format='JSON', partitions=3);
         CREATE TABLE owners (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='owners', key_format='KAFKA', value_format='JSON', partitions=3);
         CREATE STREAM readings (car STRING KEY, speed DOUBLE) WITH (kafka_topic='readings', key_format='KAFKA', value_format='JSON', partitions=3);
         CREATE STREAM enriched AS SELECT c.owner AS owner, r.car AS car, speed, name FROM readings r JOIN cars c ON r.car = c.id JOIN owners o ON c.owner = o.id;",
    )
    .unwrap();
    let whole = engine.queries().values().next().unwrap().pipeline.clone();
    assert_eq!(whole.split_point(), Some(SplitPoint::Join(1)));
    let (joins, rest) = whole.split(3, "rows").unwrap().expect("split at join 1");
    assert_eq!(joins.split_point(), None);
    assert_eq!(rest.split_point(), None);
    assert!(rest.reads_joined_rows(0) && !rest.reads_joined_rows(1));
    let topics: Vec<String> = rest.inputs().iter().map(|s| s.topic.clone()).collect();
    assert_eq!(topics, ["rows", "owners"]);
    let cars = [
        record("c1", r#"{"MODEL": "zoe", "OWNER": "o1"}"#, 0),
        record("c2", r#"{"MODEL": "ion", "OWNER": "o2"}"#, 1),
        record("c3", r#"{"MODEL": "ion", "OWNER": null}"#, 2),
    ];
    let owners = [
        record("o1", r#"{"NAME": "ada"}"#, 0),
        record("o2", r#"{"NAME": "bo"}"#, 1),
    ];
    let readings: Vec<_> = ["c1", "c2", "c3", "c1", "c9"]
        .iter()
        .enumerate()
        .map(|(i, car)| record(car, &format!(r#"{{"SPEED": {i}.5}}"#), i as i64))
        .collect();
    whole.process_input(1, &cars).unwrap();
    whole.process_input(2, &owners).unwrap();
    let mut want = shown(&whole.process_input(0, &readings).unwrap().batch);
    want.sort();
    assert_eq!(want, ["o1|c1|0.5|ada", "o1|c1|3.5|ada", "o2|c2|1.5|bo"]);

    joins.process_input(1, &cars).unwrap();
    rest.process_input(1, &owners).unwrap();
    let handed = joins.process_input(0, &readings).unwrap();
    let internal = unwrapped(&handed, 0);
    // Each reading that met its car, where its owner's key is (a NULL owner: partition 0).
    assert_eq!(
        internal.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let places: Vec<i32> = internal.iter().map(|r| r.partition).collect();
    assert_eq!(
        places,
        [
            partition_for(b"o1", 3),
            partition_for(b"o2", 3),
            0,
            partition_for(b"o1", 3)
        ]
    );
    let mut got = shown(&rest.process_input(0, &internal).unwrap().batch);
    got.sort();
    assert_eq!(got, want);
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
        headers: Vec::new(),
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

#[test]
fn the_joins_after_a_split_keep_their_buffers_in_their_changelog() {
    let mut engine = Engine::new(Arc::new(MemoryTopics::new()));
    run(
        &mut engine,
        "CREATE STREAM l (id STRING KEY, a INT) WITH (kafka_topic='l', key_format='KAFKA', value_format='JSON', partitions=1);
         CREATE STREAM r (id STRING KEY, ref STRING) WITH (kafka_topic='r', key_format='KAFKA', value_format='JSON', partitions=1);
         CREATE STREAM s (id STRING KEY, c INT) WITH (kafka_topic='s', key_format='KAFKA', value_format='JSON', partitions=1);
         CREATE STREAM j AS SELECT r.ref AS ref, a, c FROM l JOIN r WITHIN 1 HOUR ON l.id = r.id JOIN s WITHIN 1 HOUR ON r.ref = s.id;",
    )
    .unwrap();
    let whole = engine.queries().values().next().unwrap().pipeline.clone();
    assert_eq!(whole.split_point(), Some(SplitPoint::Join(1)));
    let at = |key: String, value: String, offset: i64| eddy_runtime::Record {
        timestamp: 1_700_000_000_000 + offset,
        ..record(&key, &value, offset)
    };
    let s: Vec<_> = (0..4)
        .map(|k| at(format!("s{k}"), format!(r#"{{"C": {k}}}"#), k))
        .collect();
    let l: Vec<_> = (0..40)
        .map(|i| at(format!("k{i}"), format!(r#"{{"A": {i}}}"#), 10 + i))
        .collect();
    let r: Vec<_> = (0..40)
        .map(|i| {
            at(
                format!("k{i}"),
                format!(r#"{{"REF": "s{}"}}"#, i % 5),
                100 + i,
            )
        })
        .collect();
    whole.process_input(2, &s).unwrap();
    whole.process_input(0, &l).unwrap();
    let mut want = shown(&whole.process_input(1, &r).unwrap().batch);
    want.sort();
    // Each pair whose ref names one of the four s records (ref s4 names none).
    assert_eq!(want.len(), 32);

    let (joins, rest) = whole.split(1, "rows").unwrap().expect("split at join 1");
    rest.process_input(1, &s).unwrap();
    joins.process_input(0, &l).unwrap();
    let internal = unwrapped_all(&joins.process_input(1, &r).unwrap());
    let (first, second) = internal.split_at(internal.len() / 2);
    let mut got = shown(&rest.process_input(0, first).unwrap().batch);
    // The rest of the query restarts from what it wrote: its buffers (of s, of the rows so far)
    // come back, and the second half meets them.
    let positions = [
        (0, first.last().unwrap().offset + 1),
        (input_position(1, 0), 4),
    ];
    let changes = rest.changes(&positions, None).unwrap();
    let (_, restarted) = whole.split(1, "rows").unwrap().expect("split again");
    let checkpoint = restarted.restore(changes).unwrap().expect("a checkpoint");
    assert_eq!(checkpoint.positions, positions);
    got.extend(shown(&restarted.process_input(0, second).unwrap().batch));
    got.sort();
    assert_eq!(got, want);
}

/// [`unwrapped`] for records from any input partition, numbered in one internal partition.
fn unwrapped_all(handed: &eddy_runtime::ProcessedBatch) -> Vec<eddy_runtime::Record> {
    use datafusion::arrow::array::AsArray;
    let values = handed.batch.column(0).as_binary::<i32>();
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (_, payload, _, _) = eddy_runtime::envelope::open(v.unwrap()).unwrap();
            eddy_runtime::Record {
                key: None,
                value: payload.map(<[u8]>::to_vec),
                timestamp: handed.rowtime[i],
                partition: 0,
                offset: i as i64,
                headers: Vec::new(),
            }
        })
        .collect()
}
