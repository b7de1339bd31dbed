//! Pull queries read the rows a materialized table holds now: key lookups, IN, ranges, window bounds,
//! other predicates and LIMIT, over the state of the query that builds the table.

use datafusion::arrow::array::RecordBatch;
use eddy_runtime::{Engine, PullQuery, Record};

use crate::common::engine_with as engine;

fn rows(batch: &RecordBatch) -> Vec<String> {
    crate::common::rows_text(batch, ",")
}

fn plan(engine: &Engine, sql: &str) -> eddy_common::Result<PullQuery> {
    let stmt = eddy_sql::parse(sql).expect("parse").remove(0);
    let eddy_sql::statement::Statement::Select(q) = &stmt.statement else {
        panic!("a SELECT")
    };
    engine.plan_pull(q, &Default::default())
}

fn pull(engine: &Engine, sql: &str) -> eddy_common::Result<(Vec<String>, Vec<String>)> {
    let batch = plan(engine, sql)?.execute()?;
    let names = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    Ok((names, rows(&batch)))
}

/// Readings of sensors 0..4; sensor k gets k + 1 readings of value 10 * k in window [0, 10 s), and
/// sensor 1 one more in [10 s, 20 s).
fn feed(engine: &Engine, id: &str) {
    let query = engine.query(id).expect("query");
    let mut input = Vec::new();
    for k in 0..4i64 {
        for n in 0..=k {
            input.push((k, 10 * k, 1_000 + n));
        }
    }
    input.push((1, 5, 12_000));
    let records: Vec<Record> = input
        .into_iter()
        .enumerate()
        .map(|(i, (k, v, ts))| Record {
            key: Some(k.to_string().into_bytes()),
            value: Some(format!(r#"{{"V":{v}}}"#).into_bytes()),
            timestamp: ts,
            partition: 0,
            offset: i as i64,
            headers: Vec::new(),
        })
        .collect();
    query.pipeline.process(&records).expect("process");
}

#[test]
fn pull_queries_read_a_windowed_table() {
    let (engine, id) = engine(&[
        "CREATE STREAM s (id INT KEY, v INT) WITH (kafka_topic='s', format='JSON', partitions=1);",
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n, SUM(v) AS total FROM s WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY id;",
    ]);
    feed(&engine, &id);
    for keyed in [
        "SELECT * FROM t WHERE id = 1;",
        "SELECT * FROM t WHERE id IN (2, 3) AND WINDOWSTART >= 10000;",
    ] {
        assert!(
            plan(&engine, keyed).unwrap().looks_up_keys(),
            "{keyed}: every window of the key is looked up"
        );
    }
    let (names, mut got) = pull(&engine, "SELECT * FROM t WHERE id = 1;").unwrap();
    got.sort();
    assert_eq!(names, ["ID", "WINDOWSTART", "WINDOWEND", "N", "TOTAL"]);
    assert_eq!(got, ["1,0,10000,2,20", "1,10000,20000,1,5"]);
    let (_, got) = pull(
        &engine,
        "SELECT id, n FROM t WHERE id = 1 AND WINDOWSTART >= 10000;",
    )
    .unwrap();
    assert_eq!(got, ["1,1"]);
    let (_, mut got) = pull(&engine, "SELECT id, total FROM t WHERE id IN (2, 3);").unwrap();
    got.sort();
    assert_eq!(got, ["2,60", "3,120"]);
    let (_, mut got) = pull(&engine, "SELECT id FROM t WHERE id > 1 AND n > 2;").unwrap();
    got.sort();
    assert_eq!(got, ["2", "3"]);
    let (_, got) = pull(&engine, "SELECT * FROM t LIMIT 2;").unwrap();
    assert_eq!(got.len(), 2);
    let (_, got) = pull(&engine, "SELECT * FROM t WHERE id = 42;").unwrap();
    assert!(got.is_empty());
}

#[test]
fn windows_past_their_retention_are_gone_from_key_lookups() {
    let (engine, id) = engine(&[
        "CREATE STREAM s (id INT KEY, v INT) WITH (kafka_topic='s', format='JSON', partitions=1);",
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM s WINDOW TUMBLING (SIZE 10 SECONDS, RETENTION 20 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY id;",
    ]);
    let record = |offset: i64, key: i64, ts: i64| Record {
        key: Some(key.to_string().into_bytes()),
        value: Some(br#"{"V":1}"#.to_vec()),
        timestamp: ts,
        partition: 0,
        offset,
        headers: Vec::new(),
    };
    let query = engine.query(&id).expect("query");
    query
        .pipeline
        .process(&[record(0, 1, 1_000), record(1, 1, 11_000)])
        .unwrap();
    let (_, got) = pull(&engine, "SELECT WINDOWSTART, n FROM t WHERE id = 1;").unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    // Stream time moves far past both windows' retention.
    query.pipeline.process(&[record(2, 2, 100_000)]).unwrap();
    let (_, got) = pull(&engine, "SELECT WINDOWSTART, n FROM t WHERE id = 1;").unwrap();
    assert!(got.is_empty(), "{got:?}");
    let (_, got) = pull(&engine, "SELECT id FROM t;").unwrap();
    assert_eq!(got, ["2"]);
}

#[test]
fn pull_queries_over_topics_read_their_records() {
    let (engine, _) = engine(&[
        "CREATE STREAM s (id INT KEY, v INT) WITH (kafka_topic='s', format='JSON', partitions=1);",
        "CREATE TABLE plain (id INT PRIMARY KEY, v INT) WITH (kafka_topic='p', format='JSON', partitions=1);",
    ]);
    let record = |offset: i64, key: &str, value: Option<&str>| Record {
        key: Some(key.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        timestamp: offset,
        partition: 0,
        offset,
        headers: Vec::new(),
    };
    let records = [
        record(0, "2", Some(r#"{"V": 20}"#)),
        record(1, "1", Some(r#"{"V": 10}"#)),
        record(2, "2", Some(r#"{"V": 21}"#)),
        record(3, "3", Some(r#"{"V": 30}"#)),
        record(4, "3", None),
    ];
    let scan = |sql: &str| {
        let query = plan(&engine, sql).unwrap();
        assert!(query.scan_topic().is_some(), "{sql} reads its topic");
        rows(&query.execute_over(&records).unwrap())
    };
    // A table: the latest value of each key, in key order; a deleted key is gone.
    assert_eq!(scan("SELECT * FROM plain;"), ["1,10", "2,21"]);
    assert_eq!(scan("SELECT v FROM plain WHERE id = 2;"), ["21"]);
    // A stream: every record with a value, in order, up to the LIMIT.
    assert_eq!(scan("SELECT * FROM s;"), ["2,20", "1,10", "2,21", "3,30"]);
    assert_eq!(scan("SELECT v FROM s WHERE v > 10 LIMIT 2;"), ["20", "21"]);
}

#[test]
fn pull_queries_look_keys_up_and_refuse_grouping() {
    let (engine, id) = engine(&[
        "CREATE STREAM s (id INT KEY, v INT) WITH (kafka_topic='s', format='JSON', partitions=1);",
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM s GROUP BY id;",
    ]);
    feed(&engine, &id);
    for (sql, lookup, want) in [
        ("SELECT n FROM t WHERE id = 3;", true, vec!["4"]),
        ("SELECT n FROM t WHERE 1 + 2 = id;", true, vec!["4"]),
        (
            "SELECT id, n FROM t WHERE id IN (1, 3, 42);",
            true,
            vec!["1,3", "3,4"],
        ),
        ("SELECT n FROM t WHERE id = 3 AND n > 10;", true, vec![]),
        ("SELECT n FROM t WHERE id > 2;", false, vec!["4"]),
        (
            "SELECT n FROM t WHERE id = 3 OR id = 0;",
            false,
            vec!["1", "4"],
        ),
    ] {
        let query = plan(&engine, sql).unwrap();
        assert_eq!(query.looks_up_keys(), lookup, "{sql}");
        assert_eq!(rows(&query.execute().unwrap()), want, "{sql}");
    }
    let err = pull(&engine, "SELECT id, COUNT(*) FROM t GROUP BY id;").unwrap_err();
    assert!(err.to_string().contains("GROUP BY"), "{err}");
}

/// Lookups that pin the key and say nothing else share one plan (without their WHERE): each key
/// still gets its own row, and a statement that changes the catalog starts the plans over.
#[test]
fn lookups_of_one_shape_share_a_plan_and_answer_for_their_own_keys() {
    let (mut engine, id) = engine(&[
        "CREATE STREAM s (id STRING KEY, v INT) WITH (kafka_topic='s', format='JSON', partitions=1);",
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM s GROUP BY id;",
    ]);
    feed(&engine, &id);
    for (sql, want) in [
        ("SELECT n FROM t WHERE id = '3';", vec!["4"]),
        ("SELECT n FROM t WHERE id = '1';", vec!["3"]),
        ("SELECT n FROM t WHERE '0' = id;", vec!["1"]),
        ("SELECT n FROM t WHERE id = 'none';", vec![]),
        (
            "SELECT id, n FROM t WHERE id IN ('2', '3');",
            vec!["2,3", "3,4"],
        ),
        ("SELECT n FROM t WHERE id = '3' AND n > 10;", vec![]),
        ("SELECT n FROM t WHERE id = '3';", vec!["4"]),
    ] {
        let query = plan(&engine, sql).unwrap();
        assert!(query.looks_up_keys(), "{sql}");
        assert_eq!(rows(&query.execute().unwrap()), want, "{sql}");
    }
    for sql in [format!("TERMINATE {id};"), "DROP TABLE t;".to_string()] {
        for stmt in eddy_sql::parse(&sql).expect("parse") {
            engine.execute(&stmt, &Default::default()).expect(&sql);
        }
    }
    assert!(plan(&engine, "SELECT n FROM t WHERE id = '3';").is_err());
}

/// A pull query over a table created over a topic gives the same rows from the table's store (its
/// keys looked up, or all its rows) as from a read of the whole topic.
#[test]
fn a_table_over_a_topic_answers_from_its_store_as_from_its_topic() {
    let (engine, _) = engine(&[
        "CREATE TABLE cars (id INT PRIMARY KEY, model STRING, year INT) WITH (kafka_topic='cars', format='JSON', partitions=1);",
    ]);
    let source = engine.catalog().get("CARS").unwrap().clone();
    let records: Vec<Record> = (0..300i64)
        .map(|i| Record {
            key: Some((i % 50).to_string().into_bytes()),
            // Every 7th record deletes its key.
            value: (i % 7 != 6)
                .then(|| format!(r#"{{"MODEL":"m{i}","YEAR":{}}}"#, 2000 + i % 20).into_bytes()),
            timestamp: i,
            partition: 0,
            offset: i,
            headers: Vec::new(),
        })
        .collect();
    let mut store = eddy_runtime::table_store::TableStore::new(
        &source,
        &eddy_runtime::registry::MemoryRegistry::shared(),
    )
    .unwrap();
    for chunk in records.chunks(64) {
        store.apply(chunk.to_vec()).unwrap();
    }
    for (sql, lookup) in [
        ("SELECT * FROM cars WHERE id = 3;", true),
        (
            "SELECT model FROM cars WHERE id IN (1, 6, 13, 48, 99);",
            true,
        ),
        (
            "SELECT id, year FROM cars WHERE id = 6 AND year > 2005;",
            true,
        ),
        ("SELECT * FROM cars WHERE year = 2010;", false),
        ("SELECT id FROM cars WHERE id > 40 LIMIT 3;", false),
    ] {
        let query = plan(&engine, sql).unwrap();
        let from_topic = rows(&query.execute_over(&records).unwrap());
        let stored = match query.lookup_keys() {
            Some(keys) => store.lookup(keys).unwrap(),
            None => store.records(),
        };
        assert_eq!(query.lookup_keys().is_some(), lookup, "{sql}");
        assert_eq!(
            rows(&query.execute_over(&stored).unwrap()),
            from_topic,
            "{sql}"
        );
        assert!(
            !from_topic.is_empty() || sql.contains("99"),
            "{sql} gives rows"
        );
    }
}
