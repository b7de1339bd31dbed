//! A logged stream-stream join that crashes, is restored from its changelog and replays its inputs
//! from the checkpoint's positions loses no joined row and makes none that a run without a crash
//! does not make, whatever prefix of the interrupted changelog write reached the topic; a write that
//! completed leaves nothing to repeat. The same for a join of three streams, whose second join
//! keeps the rows of the first in its buffers.

use std::collections::BTreeMap;

use eddy_runtime::changelog::{StateChange, input_position};
use eddy_runtime::registry::MemoryRegistry;
use eddy_runtime::{PersistentQuery, Pipeline, Record};

use crate::common::engine_with;

const CHUNK: usize = 120;

/// `key`: the projection of the join's key (a full outer join's is the synthetic ROWKEY); `values`:
/// the columns of the streams joined.
fn join_query(key: &str, values: &str, join: &str) -> PersistentQuery {
    let (engine, id) = engine_with(&[
        "CREATE STREAM l (id INT KEY, a INT) WITH (kafka_topic='l', format='JSON', partitions=2);",
        "CREATE STREAM r (id INT KEY, b INT) WITH (kafka_topic='r', format='JSON', partitions=2);",
        "CREATE STREAM s (id INT KEY, c INT) WITH (kafka_topic='s', format='JSON', partitions=2);",
        &format!("CREATE STREAM j AS SELECT {key} AS id, {values} FROM l {join};"),
    ]);
    engine.query(&id).expect("query").clone()
}

/// Records of `sides` inputs (2 or 3) in time order (input index first), keyed over two
/// partitions, with matches inside and outside the window.
fn inputs(n: i64, sides: usize) -> Vec<(usize, Record)> {
    let mut offsets = [[0i64; 2]; 3];
    (0..n)
        .map(|i| {
            let input = match sides {
                2 => usize::from((i * 7919) % 3 == 0),
                _ => ((i * 7919) % 3) as usize,
            };
            let key = (i * 31) % 5;
            let partition = (key % 2) as i32;
            let offset = offsets[input][partition as usize];
            offsets[input][partition as usize] += 1;
            let field = ["a", "b", "c"][input];
            let record = Record {
                key: Some(key.to_string().into_bytes()),
                value: Some(format!(r#"{{"{field}":{i}}}"#).into_bytes()),
                timestamp: i * 250 + (i % 4) * 100,
                partition,
                offset,
                headers: Vec::new(),
            };
            (input, record)
        })
        .collect()
}

fn fresh(query: &PersistentQuery) -> Pipeline {
    Pipeline::new(query.pipeline.plan.clone(), &MemoryRegistry::shared())
        .unwrap()
        .logged()
        .unwrap()
}

/// Runs `records` through the pipeline in runs of one input each.
fn emit(
    query: &PersistentQuery,
    pipeline: &Pipeline,
    records: &[(usize, Record)],
    out: &mut Vec<String>,
) {
    for run in records.chunk_by(|a, b| a.0 == b.0) {
        let batch: Vec<Record> = run.iter().map(|(_, r)| r.clone()).collect();
        let processed = pipeline.process_input(run[0].0, &batch).unwrap();
        out.extend(
            query
                .sink_spec
                .records(&processed)
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap()),
        );
    }
}

/// Runs the join over `input` in chunks, writing the changelog after each; with `crash =
/// Some((chunk, written))` it stops in that chunk's changelog write after `written` records, then
/// restores a fresh pipeline and replays from the positions of the last complete checkpoint.
/// Returns how often each output row came.
fn run(
    query: &PersistentQuery,
    input: &[(usize, Record)],
    crash: Option<(usize, usize)>,
) -> BTreeMap<String, usize> {
    let mut outputs = Vec::new();
    let mut changelog: Vec<StateChange> = Vec::new();
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let pipeline = fresh(query);
    for (n, chunk) in input.chunks(CHUNK).enumerate() {
        emit(query, &pipeline, chunk, &mut outputs);
        for (i, r) in chunk {
            positions.insert(input_position(*i, r.partition), r.offset + 1);
        }
        let at: Vec<(i32, i64)> = positions.iter().map(|(p, o)| (*p, *o)).collect();
        let changes = pipeline.changes(&at, None).unwrap();
        if let Some((crashed, written)) = crash
            && crashed == n
        {
            changelog.extend(changes.into_iter().take(written));
            break;
        }
        changelog.extend(changes);
    }
    if crash.is_some() {
        let restored = fresh(query);
        let resume = restored
            .restore(changelog)
            .unwrap()
            .map(|c| c.positions)
            .unwrap_or_default();
        let replay: Vec<(usize, Record)> = input
            .iter()
            .filter(|(i, r)| {
                let id = input_position(*i, r.partition);
                r.offset >= resume.iter().find(|(p, _)| *p == id).map_or(0, |(_, o)| *o)
            })
            .cloned()
            .collect();
        emit(query, &restored, &replay, &mut outputs);
    }
    let mut counts = BTreeMap::new();
    for o in outputs {
        *counts.entry(o).or_default() += 1;
    }
    counts
}

fn assert_restores(key: &str, join: &str) {
    let sides = if join.matches("JOIN").count() > 1 {
        3
    } else {
        2
    };
    let values = ["a, b", "a, b, c"][sides - 2];
    let query = join_query(key, values, join);
    let input = inputs(1_500, sides);
    let expected = run(&query, &input, None);
    assert!(expected.len() > 100, "the join makes rows");
    let unmatched = expected
        .keys()
        .any(|k| k.contains(r#""A":null"#) || k.contains(r#""B":null"#));
    assert_eq!(unmatched, !join.starts_with("JOIN"), "unmatched rows");
    for at in [1, 4, 9] {
        for written in [0, 1, 7, 60, usize::MAX] {
            let got = run(&query, &input, Some((at, written)));
            let lost: Vec<_> = expected
                .keys()
                .filter(|k| !got.contains_key(*k))
                .take(3)
                .collect();
            let spurious: Vec<_> = got
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .take(3)
                .collect();
            assert!(
                lost.is_empty() && spurious.is_empty(),
                "crash in chunk {at} after {written} changelog records: lost {lost:?}, spurious {spurious:?}"
            );
            if written == usize::MAX {
                assert_eq!(got, expected, "a complete write leaves nothing to repeat");
            }
        }
    }
}

#[test]
fn an_inner_stream_stream_join_restores_its_buffers() {
    assert_restores("l.id", "JOIN r WITHIN 2 SECONDS ON l.id = r.id");
}

#[test]
fn an_outer_join_restores_the_records_waiting_for_their_window_to_close() {
    assert_restores(
        "ROWKEY",
        "FULL OUTER JOIN r WITHIN 2 SECONDS GRACE PERIOD 1 SECOND ON l.id = r.id",
    );
}

#[test]
fn a_left_join_without_grace_restores() {
    assert_restores(
        "l.id",
        "LEFT JOIN r WITHIN (1 SECOND, 3 SECONDS) ON l.id = r.id",
    );
}

#[test]
fn a_join_of_three_streams_restores_both_joins_buffers() {
    assert_restores(
        "l.id",
        "JOIN r WITHIN 2 SECONDS ON l.id = r.id LEFT JOIN s WITHIN 1 SECOND GRACE PERIOD 1 SECOND ON r.id = s.id",
    );
}
