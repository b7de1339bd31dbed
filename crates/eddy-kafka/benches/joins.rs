//! Joins over in-memory records (decode → join → project → encode):
//!   (a) stream-table enrichment: readings of 100,000 cars, each with its car's model
//!       (`LEFT JOIN cars ON r.car = c.id`), the table loaded first;
//!   (b) stream-stream: orders and their shipments 0.5 s later, `JOIN ... WITHIN 1 MINUTE GRACE PERIOD
//!       1 MINUTE`, the two sides fed batch by batch;
//!   (c) the resident memory of 1,000,000 orders buffered by a stream-stream join waiting for shipments;
//!   (d) `COUNT(*), SUM(speed) ... GROUP BY model` over the (a) join, run whole and split in two as a
//!       server runs it (the joins' rows encoded for the internal topic, read back, aggregated).
//! Prints events per second and per CPU-second of this process.
//!
//!   cargo bench -p eddy-kafka -p eddy-server -p eddy-cli --bench joins -- [--events N] [--cars N]
//!       [--only a|b|c|d]
//! (naming the server and shell packages too reuses the release build's dependencies.)

use std::sync::Arc;
use std::time::Instant;

use eddy_runtime::arrow::array::AsArray;
use eddy_runtime::{Engine, MemoryTopics, PersistentQuery, Record, envelope};

mod allocator;
mod cpu;
mod flags;
mod in_memory;
use cpu::{cpu_seconds, resident_mb};
use flags::flag;

const BATCH: usize = 4096;
const T0: i64 = 1_700_000_000_000;

const CARS: &str = "CREATE TABLE cars (id STRING PRIMARY KEY, model STRING, owner STRING) WITH (kafka_topic='cars', key_format='KAFKA', value_format='JSON', partitions=4);";
const READINGS: &str = "CREATE STREAM readings (car STRING KEY, speed DOUBLE, temp DOUBLE) WITH (kafka_topic='readings', key_format='KAFKA', value_format='JSON', partitions=4);";
const ENRICH: &str = "CREATE STREAM enriched AS SELECT r.car AS car, speed, temp, model FROM readings r LEFT JOIN cars c ON r.car = c.id;";
const ORDERS: &str = "CREATE STREAM orders (id STRING KEY, amount INT) WITH (kafka_topic='orders', key_format='KAFKA', value_format='JSON', partitions=4);";
const SHIPMENTS: &str = "CREATE STREAM shipments (id STRING KEY, carrier STRING) WITH (kafka_topic='shipments', key_format='KAFKA', value_format='JSON', partitions=4);";

/// The query of `statements`, as `eddy test` runs it (every input emits).
fn plan(statements: &[&str]) -> PersistentQuery {
    let (engine, id) = in_memory::planned(statements);
    engine.query(&id).expect("query").clone()
}

/// The query of `statements` in `engine`.
fn plan_in(mut engine: Engine, statements: &[&str]) -> PersistentQuery {
    let id = in_memory::run(&mut engine, statements);
    engine.query(&id).expect("query").clone()
}

fn record(key: String, value: String, timestamp: i64, offset: i64) -> Record {
    Record {
        key: Some(key.into_bytes()),
        value: Some(value.into_bytes()),
        timestamp,
        partition: 0,
        offset,
        headers: Vec::new(),
    }
}

/// Processes records of one input in batches; returns the output records.
fn feed(query: &PersistentQuery, input: usize, records: &[Record]) -> usize {
    let mut produced = 0;
    for chunk in records.chunks(BATCH) {
        let processed = query.pipeline.process_input(input, chunk).expect("process");
        produced += query.sink_spec.records(&processed).expect("encode").len();
    }
    produced
}

fn report(label: &str, events: u64, wall: f64, cpu: f64) {
    println!(
        "{label}: {events} events in {wall:.2} s wall, {cpu:.2} CPU-s: {:.0} events/s, {:.0} events per CPU-second",
        events as f64 / wall,
        events as f64 / cpu
    );
}

/// The cars table's rows: `cars` cars, 50 models.
fn car_rows(cars: u64) -> Vec<Record> {
    (0..cars)
        .map(|i| {
            let value = format!(r#"{{"MODEL":"model-{}","OWNER":"owner-{i}"}}"#, i % 50);
            record(format!("car-{i}"), value, T0, i as i64)
        })
        .collect()
}

/// `events` readings of the cars, one car in ten not in the table.
fn readings(events: u64, cars: u64) -> Vec<Record> {
    (0..events)
        .map(|i| {
            let value = format!(
                r#"{{"SPEED":{:.1},"TEMP":{:.1}}}"#,
                (i % 130) as f64,
                15.0 + (i % 20) as f64
            );
            let car = (i * 7919) % (cars + cars / 10);
            record(format!("car-{car}"), value, T0 + 1 + i as i64, i as i64)
        })
        .collect()
}

fn stream_table(events: u64, cars: u64) {
    let query = plan(&[CARS, READINGS, ENRICH]);
    feed(&query, 1, &car_rows(cars));
    let readings = readings(events, cars);
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let produced = feed(&query, 0, &readings);
    report(
        &format!("(a) stream-table enrichment against {cars} rows"),
        events,
        start.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0,
    );
    println!("    {produced} output records");
}

/// (d) an aggregation over the stream-table join (readings per model), run whole in one pipeline
/// and split as a server runs it: the joins' rows encoded for the internal topic, read back and
/// aggregated.
fn aggregation_over_join(events: u64, cars: u64) {
    let count = "CREATE TABLE per_model AS SELECT model, COUNT(*) AS n, SUM(speed) AS speeds FROM readings r JOIN cars c ON r.car = c.id GROUP BY model;";
    // As a server plans it: emitting per commit, keeping its changes for a changelog.
    let whole = plan_in(
        Engine::new(Arc::new(MemoryTopics::new())),
        &[CARS, READINGS, count],
    );
    let (joins, rest) = whole
        .pipeline
        .split(4, "rows")
        .expect("split")
        .expect("an aggregation over a join");
    let (table, readings) = (car_rows(cars), readings(events, cars));
    whole.pipeline.process_input(1, &table).expect("table");
    joins.process_input(1, &table).expect("table");
    let groups = timed("(d) COUNT per model over the join, whole", events, || {
        for chunk in readings.chunks(BATCH) {
            whole.pipeline.process_input(0, chunk).expect("process");
        }
        flushed_groups(&whole.pipeline)
    });
    let split_groups = timed(
        "(d) COUNT per model over the join, split in two",
        events,
        || {
            let mut offset = 0;
            for chunk in readings.chunks(BATCH) {
                let handed = joins.process_input(0, chunk).expect("join");
                let values = handed.batch.column(0).as_binary::<i32>();
                let internal: Vec<Record> = values
                    .iter()
                    .zip(&handed.partition)
                    .map(|(v, p)| {
                        let (_, rows, _, _) =
                            envelope::open(v.expect("a record")).expect("an envelope");
                        offset += 1;
                        Record {
                            key: None,
                            value: rows.map(<[u8]>::to_vec),
                            timestamp: T0,
                            partition: *p,
                            offset,
                            headers: Vec::new(),
                        }
                    })
                    .collect();
                rest.process_input(0, &internal).expect("aggregate");
            }
            flushed_groups(&rest)
        },
    );
    assert_eq!(groups, split_groups, "the two ways count different groups");
    println!("    {groups} groups");
}

/// Runs `run` over `events` events and reports its speed; returns what it returns.
fn timed<T>(label: &str, events: u64, run: impl FnOnce() -> T) -> T {
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let out = run();
    report(
        label,
        events,
        start.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0,
    );
    out
}

/// How many groups an aggregation emits when flushed.
fn flushed_groups(pipeline: &eddy_runtime::Pipeline) -> usize {
    pipeline
        .flush()
        .expect("flush")
        .map_or(0, |f| f.batch.num_rows())
}

fn order(i: u64) -> Record {
    let value = format!(r#"{{"AMOUNT":{}}}"#, i % 1000);
    record(format!("order-{i}"), value, T0 + i as i64, i as i64)
}

fn stream_stream(events: u64) {
    let join = "CREATE STREAM shipped AS SELECT o.id AS id, amount, carrier FROM orders o JOIN shipments s WITHIN 1 MINUTE GRACE PERIOD 1 MINUTE ON o.id = s.id;";
    let query = plan(&[ORDERS, SHIPMENTS, join]);
    let orders: Vec<Record> = (0..events).map(order).collect();
    let shipments: Vec<Record> = (0..events)
        .map(|i| {
            let value = format!(r#"{{"CARRIER":"carrier-{}"}}"#, i % 7);
            record(format!("order-{i}"), value, T0 + 500 + i as i64, i as i64)
        })
        .collect();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut produced = 0;
    for (o, s) in orders.chunks(BATCH).zip(shipments.chunks(BATCH)) {
        produced += feed(&query, 0, o);
        produced += feed(&query, 1, s);
    }
    report(
        "(b) stream-stream, 1-minute window",
        2 * events,
        start.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0,
    );
    println!("    {produced} joined records");
}

fn buffered_memory() {
    let join = "CREATE STREAM shipped AS SELECT o.id AS id, amount, carrier FROM orders o JOIN shipments s WITHIN 1 HOUR ON o.id = s.id;";
    let query = plan(&[ORDERS, SHIPMENTS, join]);
    const N: u64 = 1_000_000;
    let before = resident_mb();
    for start in (0..N).step_by(BATCH) {
        let orders: Vec<Record> = (start..(start + BATCH as u64).min(N)).map(order).collect();
        feed(&query, 0, &orders);
    }
    println!(
        "(c) 1,000,000 orders buffered by a stream-stream join: +{:.0} MB resident",
        resident_mb() - before
    );
}

fn main() {
    let events: u64 = flag("--events").unwrap_or(10_000_000);
    let cars: u64 = flag("--cars").unwrap_or(100_000);
    let only: Option<String> = flag("--only");
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if runs("c") {
        buffered_memory();
    }
    if runs("a") {
        stream_table(events, cars);
    }
    if runs("b") {
        stream_stream(events / 2);
    }
    if runs("d") {
        aggregation_over_join(events, cars);
    }
}
