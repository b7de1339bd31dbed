//! Per-commit emission folds a batch's rows into their groups at once and emits each changed group
//! once per flush; its rows must equal the last row per-record emission gives each group.

use std::collections::HashMap;

use eddy_runtime::{Engine, Record};

use crate::common::engine_with;

fn engine_with_query(sql: &str) -> (Engine, String) {
    engine_with(&[
        "CREATE STREAM s (id INT KEY, v INT) WITH (kafka_topic='s', format='JSON', partitions=1);",
        sql,
    ])
}

fn records(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: Some(serde_json::to_vec(&(i % 7)).unwrap()),
            value: Some(format!(r#"{{"v":{}}}"#, i % 13).into_bytes()),
            // Out of order by up to a window, so that some rows land in earlier windows.
            timestamp: i * 100 - (i % 5) * 1_000,
            partition: 0,
            offset: i,
            headers: Vec::new(),
        })
        .collect()
}

/// The last (key, value) per key — window included in the key bytes — of a run's records.
fn last_per_key(out: &[Record]) -> HashMap<Vec<u8>, Option<Vec<u8>>> {
    out.iter()
        .map(|r| (r.key.clone().unwrap_or_default(), r.value.clone()))
        .collect()
}

#[test]
fn per_commit_rows_equal_the_last_per_record_rows() {
    let sql = "CREATE TABLE t AS SELECT id, COUNT(*) AS n, SUM(v) AS total, MAX(v) AS top, COLLECT_SET(v) AS seen FROM s WINDOW TUMBLING (SIZE 5 SECONDS) GROUP BY id;";
    let (engine, id) = engine_with_query(sql);
    let query = engine.query(&id).expect("query");
    let input = records(2_000);

    let mut per_record = Vec::new();
    for r in &input {
        let processed = query.pipeline.process(std::slice::from_ref(r)).unwrap();
        per_record.extend(query.sink_spec.records(&processed).unwrap());
    }

    let pipeline = eddy_runtime::Pipeline::clone(&query.pipeline).per_commit();
    let mut per_commit = Vec::new();
    let mut flushes = 0;
    for chunk in input.chunks(300) {
        let processed = pipeline.process(chunk).unwrap();
        assert_eq!(
            processed.batch.num_rows(),
            0,
            "nothing is emitted before a flush"
        );
        let flushed = pipeline.flush().unwrap().expect("an aggregation flushes");
        let rows = query.sink_spec.records(&flushed).unwrap();
        let keys: std::collections::HashSet<_> = rows.iter().map(|r| r.key.clone()).collect();
        assert_eq!(
            keys.len(),
            rows.len(),
            "one row per changed group per flush"
        );
        per_commit.extend(rows);
        flushes += 1;
    }
    assert_eq!(flushes, 7);
    assert!(per_commit.len() < per_record.len());
    assert_eq!(last_per_key(&per_commit), last_per_key(&per_record));
    // A second flush without input has nothing to say.
    assert_eq!(pipeline.flush().unwrap().unwrap().batch.num_rows(), 0);
}
