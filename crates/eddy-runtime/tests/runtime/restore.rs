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
            headers: Vec::new(),
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

/// State written by a version before (GROUP BY values and accumulator states in Arrow's row format)
/// is restored, and the first write after rewrites every group in Eddy's own row encoding and
/// deletes the old records: restoring from all of it gives the same state again.
#[test]
fn state_in_the_layout_before_is_read_and_rewritten() {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::row::{RowConverter, SortField};
    use eddy_runtime::changelog::{GroupRecord, Rows, StateKey};

    let q = stream_query("CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM s GROUP BY id;");
    let input = records(1_000, 7, |i| format!(r#"{{"v":{i}}}"#));
    let (first, second) = input.split_at(600);
    let last_per_key =
        |pipeline: &Pipeline, chunk: &[Record], out: &mut HashMap<Vec<u8>, Option<Vec<u8>>>| {
            pipeline.process(chunk).unwrap();
            let flushed = pipeline.flush().unwrap().expect("an aggregation");
            for r in q.sink_spec.records(&flushed).unwrap() {
                out.insert(r.key.unwrap_or_default(), r.value);
            }
        };
    let mut expected = HashMap::new();
    let whole = fresh(&q);
    last_per_key(&whole, first, &mut expected);
    last_per_key(&whole, second, &mut expected);

    let before = fresh(&q);
    last_per_key(&before, first, &mut HashMap::new());
    let mut positions = Vec::new();
    advance(&mut positions, first);
    // What a version before would have written: the same records with Arrow's rows.
    let arrow = |t: DataType, bytes: &[u8]| {
        let columns = eddy_runtime::state_row::decode(std::slice::from_ref(&t), &[bytes]).unwrap();
        let converter = RowConverter::new(vec![SortField::new(t)]).unwrap();
        converter
            .convert_columns(&columns)
            .unwrap()
            .row(0)
            .as_ref()
            .to_vec()
    };
    let old: Vec<StateChange> = before
        .changes(&positions, None)
        .unwrap()
        .into_iter()
        .map(|c| match StateKey::decode(&c.key, false).unwrap() {
            StateKey::Group {
                key,
                window,
                rows: Rows::Eddy,
            } => {
                let mut record = GroupRecord::decode(c.value.as_deref().unwrap()).unwrap();
                record.rows = Rows::Arrow;
                record.states = arrow(DataType::Int64, &record.states);
                StateChange {
                    key: StateKey::Group {
                        key: &arrow(DataType::Int32, key),
                        window,
                        rows: Rows::Arrow,
                    }
                    .encode(),
                    value: Some(record.encode()),
                }
            }
            _ => c,
        })
        .collect();
    assert!(
        old.iter().filter(|c| c.key[0] == b'G').count() == 7,
        "a record per group"
    );

    let after = fresh(&q);
    after.restore(old.clone()).unwrap().expect("a checkpoint");
    let mut got = HashMap::new();
    last_per_key(&after, second, &mut got);
    for (k, v) in &expected {
        assert_eq!(got.get(k), Some(v), "key {k:?}");
    }
    advance(&mut positions, second);
    let rewrite = after.changes(&positions, None).unwrap();
    let rewritten = rewrite
        .iter()
        .filter(|c| c.key[0] == b'K' && c.value.is_some())
        .count();
    let deleted = rewrite
        .iter()
        .filter(|c| c.key[0] == b'G' && c.value.is_none())
        .count();
    assert_eq!(
        (rewritten, deleted),
        (7, 7),
        "every group rewritten, every old record deleted"
    );

    // Old and new records together restore the state once.
    let again = fresh(&q);
    again
        .restore(old.into_iter().chain(rewrite).collect())
        .unwrap()
        .expect("a checkpoint");
    let more = records(1_070, 7, |i| format!(r#"{{"v":{i}}}"#));
    let third: Vec<Record> = more[1_000..].to_vec();
    let (mut want, mut got) = (HashMap::new(), HashMap::new());
    last_per_key(&whole, &third, &mut want);
    last_per_key(&again, &third, &mut got);
    assert_eq!(got, want);
}
