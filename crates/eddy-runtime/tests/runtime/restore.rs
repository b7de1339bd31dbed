//! A logged aggregation that crashes, is restored from its changelog and replays its input from the
//! committed positions ends with exactly the rows of a run without a crash — whatever prefix of the
//! interrupted changelog write reached the topic. Nothing is lost and nothing is counted twice.

use std::collections::HashMap;

use eddy_runtime::changelog::StateChange;
use eddy_runtime::registry::MemoryRegistry;
use eddy_runtime::{PersistentQuery, Pipeline, Record};

use crate::common::engine_with;

const CHUNK: usize = 250;

fn query(statements: &[&str]) -> PersistentQuery {
    let (engine, id) = engine_with(statements);
    engine.query(&id).expect("query").clone()
}

fn stream_query(select: &str) -> PersistentQuery {
    query(&[
        "CREATE STREAM s (id INT KEY, v INT) WITH (kafka_topic='s', format='JSON', partitions=2);",
        select,
    ])
}

/// Keyed records over two partitions, out of order by up to a few seconds; every 11th value is null
/// (a delete, on a table).
fn records(n: i64, keys: i64, value: impl Fn(i64) -> String) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: Some(serde_json::to_vec(&(i % keys)).unwrap()),
            value: (i % 11 != 10).then(|| value(i).into_bytes()),
            timestamp: i * 100 - (i % 5) * 1_000,
            partition: (i % 2) as i32,
            offset: i / 2,
        })
        .collect()
}

fn fresh(query: &PersistentQuery) -> Pipeline {
    Pipeline::new(query.pipeline.plan.clone(), &MemoryRegistry::shared())
        .unwrap()
        .per_commit()
        .logged()
        .unwrap()
}

/// Next offset per partition after `records`, on top of `from`.
fn advance(from: &mut Vec<(i32, i64)>, records: &[Record]) {
    for r in records {
        match from.iter_mut().find(|(p, _)| *p == r.partition) {
            Some((_, o)) => *o = (*o).max(r.offset + 1),
            None => from.push((r.partition, r.offset + 1)),
        }
    }
}

/// Runs the query over `input` in chunks, writing the changelog and committing after each chunk;
/// with `crash = Some((chunk, written))` it stops in that chunk's changelog write after `written`
/// records, before committing, then restores a fresh pipeline and replays from the committed
/// positions. Returns the last output row per key.
fn run(
    query: &PersistentQuery,
    input: &[Record],
    crash: Option<(usize, usize)>,
) -> HashMap<Vec<u8>, Option<Vec<u8>>> {
    let mut outputs: Vec<Record> = Vec::new();
    let mut changelog: Vec<StateChange> = Vec::new();
    let mut committed: Vec<(i32, i64)> = Vec::new();
    let mut positions = Vec::new();
    let pipeline = fresh(query);
    let emit = |pipeline: &Pipeline, chunk: &[Record], outputs: &mut Vec<Record>| {
        let processed = pipeline.process(chunk).unwrap();
        outputs.extend(query.sink_spec.records(&processed).unwrap());
        let flushed = pipeline.flush().unwrap().expect("an aggregation");
        outputs.extend(query.sink_spec.records(&flushed).unwrap());
    };
    for (n, chunk) in input.chunks(CHUNK).enumerate() {
        emit(&pipeline, chunk, &mut outputs);
        advance(&mut positions, chunk);
        let changes = pipeline.changes(&positions, None).unwrap();
        if let Some((at, written)) = crash
            && at == n
        {
            changelog.extend(changes.into_iter().take(written));
            break;
        }
        changelog.extend(changes);
        committed = positions.clone();
    }
    if crash.is_some() {
        let restored = fresh(query);
        let resume = restored.restore(changelog).unwrap();
        // The checkpoint is written before the commit: it is never behind the committed positions.
        let resume = resume.map(|c| c.positions).unwrap_or_default();
        for (p, c) in &committed {
            assert!(resume.iter().any(|(rp, r)| rp == p && r >= c));
        }
        let committed = resume;
        let replay: Vec<Record> = input
            .iter()
            .filter(|r| {
                r.offset
                    >= committed
                        .iter()
                        .find(|(p, _)| *p == r.partition)
                        .map_or(0, |(_, o)| *o)
            })
            .cloned()
            .collect();
        for chunk in replay.chunks(CHUNK) {
            emit(&restored, chunk, &mut outputs);
        }
    }
    outputs
        .into_iter()
        .map(|r| (r.key.unwrap_or_default(), r.value))
        .collect()
}

/// Crashes in several chunks, with none, some and all of the interrupted write on the topic.
fn assert_exact_after_crashes(query: &PersistentQuery, input: &[Record]) {
    let expected = run(query, input, None);
    assert!(expected.len() > 3, "the query produces rows");
    for at in [0, 3, 7] {
        for written in [0, 1, 5, 40, usize::MAX] {
            let got = run(query, input, Some((at, written)));
            let text = |v: Option<&Option<Vec<u8>>>| {
                v.map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
            };
            let wrong: Vec<_> = expected
                .keys()
                .chain(got.keys())
                .filter(|k| got.get(*k) != expected.get(*k))
                .take(3)
                .map(|k| (k, text(got.get(k)), text(expected.get(k))))
                .collect();
            assert!(
                wrong.is_empty(),
                "crash in chunk {at} after {written} changelog records: (key, got, expected) {wrong:?}"
            );
        }
    }
}

#[test]
fn tumbling_windows_restore_exactly() {
    let q = stream_query(
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n, SUM(v) AS total, MAX(v) AS top, AVG(v) AS mean, COLLECT_LIST(v) AS seen FROM s WINDOW TUMBLING (SIZE 5 SECONDS) GROUP BY id;",
    );
    let input = records(2_500, 7, |i| format!(r#"{{"v":{}}}"#, i % 13));
    assert_exact_after_crashes(&q, &input);
}

#[test]
fn windows_closed_and_evicted_restore_exactly() {
    let q = stream_query(
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n, SUM(v) AS total FROM s WINDOW HOPPING (SIZE 4 SECONDS, ADVANCE BY 2 SECONDS, RETENTION 20 SECONDS, GRACE PERIOD 3 SECONDS) GROUP BY id EMIT FINAL;",
    );
    let input = records(2_500, 5, |i| format!(r#"{{"v":{}}}"#, i % 13));
    assert_exact_after_crashes(&q, &input);
}

#[test]
fn sessions_restore_exactly() {
    let q = stream_query(
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n, SUM(v) AS total FROM s WINDOW SESSION (700 MILLISECONDS) GROUP BY id;",
    );
    // Gaps between a key's records vary around the session gap, so sessions start, grow and merge.
    let input: Vec<Record> = records(2_500, 3, |i| format!(r#"{{"v":{}}}"#, i % 13))
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.timestamp = (i as i64) * 90 + ((i as i64 * 7919) % 13) * 60;
            r
        })
        .collect();
    assert_exact_after_crashes(&q, &input);
}

#[test]
fn table_aggregations_restore_exactly() {
    let q = query(&[
        "CREATE TABLE src (id INT PRIMARY KEY, g INT, v INT) WITH (kafka_topic='src', format='JSON', partitions=2);",
        "CREATE TABLE t AS SELECT g, COUNT(*) AS n, SUM(v) AS total, COLLECT_LIST(v) AS seen FROM src GROUP BY g;",
    ]);
    // Rows move between groups as their g changes, and every 11th record deletes its row.
    let input = records(2_500, 40, |i| {
        format!(r#"{{"g":{},"v":{}}}"#, (i / 40) % 6, i % 13)
    });
    assert_exact_after_crashes(&q, &input);
}
