//! Throughput of the demo query `SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm FROM readings WHERE
//! temp > 25.0 AND rpm > 1000` over events shaped like the demo's:
//!   (a) from in-memory records (decode → filter → project → encode), and (a') the same with five
//!       string and date functions (UCASE, SUBSTRING, CONCAT, REPLACE, TIMESTAMPTOSTRING) added to
//!       the projection,
//!   (b) through a Kafka broker (consume → process → produce → commit), when `--broker HOST:PORT` is given:
//!       the demo query and the (c) aggregation, each at-least-once and exactly-once, beside a plain
//!       rdkafka consumer reading the same topic (a message per poll, as rdkafka offers) and the
//!       fastest librdkafka consumer we know of (fetched messages moved to a queue of their own, taken
//!       4,096 per call, as Eddy's queries read);
//! and of stateful queries over in-memory records, with per-commit emission (a flush every 8 batches):
//!   (c) `COUNT(*), SUM(rpm), MAX(temp) ... WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY sensor_id`
//!       over 1,000 sensors, one event per millisecond;
//!   (d) the resident memory of a non-windowed COUNT table holding 1,000,000 distinct keys;
//!   (e) pull queries over that table: by key (planning included) and one that reads every row;
//!   (f) the same over the (c) table's windows (1,000 sensors, 100 windows each);
//!   (g) with `--broker`, the demo query at-least-once with per-record metrics on and off.
//! Prints events per second and per CPU-second of this process.
//!
//!   cargo bench -p eddy-kafka -p eddy-server -p eddy-cli --bench throughput -- [--events N] [--repeat R]
//!       [--broker HOST:PORT] [--broker-events N] [--metrics-runs R]
//! (naming the server and shell packages too reuses the release build's dependencies.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_kafka::KafkaCluster;
use eddy_runtime::{Engine, Outcome, Record};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

mod allocator;
mod batch_read;
mod cpu;
mod flags;
mod in_memory;
use batch_read::BatchReader;
use cpu::{cpu_seconds, resident_mb};
use flags::flag;
use in_memory::planned;

const CREATE: &str = "CREATE STREAM readings (sensor_id STRING, ts BIGINT, temp DOUBLE, rpm INT, speed DOUBLE) WITH (kafka_topic='readings', value_format='JSON', partitions=4);";
const CSAS: &str = "CREATE STREAM hot AS SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm FROM readings WHERE temp > 25.0 AND rpm > 1000;";
/// The stateless query with five string and date functions in its projection.
const CSAS_FUNCTIONS: &str = "CREATE STREAM hot_text AS SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm, UCASE(sensor_id) AS upper_id, SUBSTRING(sensor_id, 3) AS num, CONCAT(sensor_id, '/', CAST(rpm AS STRING)) AS label, REPLACE(sensor_id, 's-', 'sensor-') AS long_id, TIMESTAMPTOSTRING(ts, 'yyyy-MM-dd HH:mm:ss.SSS', 'UTC') AS at FROM readings WHERE temp > 25.0 AND rpm > 1000;";
const TUMBLING: &str = "CREATE TABLE per_sensor AS SELECT sensor_id, COUNT(*) AS n, SUM(rpm) AS rpm, MAX(temp) AS peak FROM readings WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY sensor_id;";
const BATCH: usize = 4096;

fn event(i: u64) -> Vec<u8> {
    format!(
        r#"{{"sensor_id":"s-{}","ts":{},"temp":{:.1},"rpm":{},"speed":88.2}}"#,
        i % 1000,
        1_700_000_000_000u64 + i,
        15.0 + (i % 20) as f64,
        500 + (i % 9) * 250
    )
    .into_bytes()
}

fn report(label: &str, events: u64, wall: Duration, cpu: f64) {
    println!(
        "{label}: {events} events in {:.2} s wall, {:.2} CPU-s: {:.0} events/s, {:.0} events per CPU-second",
        wall.as_secs_f64(),
        cpu,
        events as f64 / wall.as_secs_f64(),
        events as f64 / cpu
    );
}

/// Runs a stateless query (`label`: (a) the demo query, (a') with five string and date functions)
/// `repeat` times over the same records and prints every run and the median: on a shared machine
/// single runs vary by 10-20 %. Returns the median in events per CPU-second.
fn in_memory(label: &str, csas: &str, events: u64, repeat: usize) -> f64 {
    let (engine, id) = planned(&[CREATE, csas]);
    let query = engine.query(&id).expect("query").clone();
    let records: Vec<Record> = (0..events)
        .map(|i| Record {
            key: None,
            value: Some(event(i)),
            timestamp: i as i64,
            partition: (i % 4) as i32,
            offset: i as i64,
            headers: Vec::new(),
        })
        .collect();
    let mut rates = Vec::new();
    for run in 1..=repeat {
        let (start, cpu0) = (Instant::now(), cpu_seconds());
        let mut produced = 0usize;
        for chunk in records.chunks(BATCH) {
            let processed = query.pipeline.process(chunk).expect("process");
            produced += query.sink_spec.records(&processed).expect("encode").len();
        }
        let cpu = cpu_seconds() - cpu0;
        report(
            &format!("{label} in-memory, run {run}"),
            events,
            start.elapsed(),
            cpu,
        );
        println!("    {produced} output records");
        rates.push(events as f64 / cpu);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!("{label} in-memory: median {median:.0} events per CPU-second over {repeat} runs");
    median
}

fn through_broker(events: u64, bootstrap: &str) {
    let cluster = Arc::new(KafkaCluster::connect(bootstrap).expect("connect"));
    cluster.wait_ready(Duration::from_secs(10)).expect("broker");
    let suffix = std::process::id();
    let topic = format!("bench_readings_{suffix}");
    let create = CREATE.replace("kafka_topic='readings'", &format!("kafka_topic='{topic}'"));
    let mut engine = Engine::new(cluster.clone());
    for s in eddy_sql::parse(&create).expect("parse") {
        engine.execute(&s, &Default::default()).expect("execute");
    }
    let t0 = Instant::now();
    for start in (0..events).step_by(100_000) {
        let batch: Vec<Record> = (start..(start + 100_000).min(events))
            .map(|i| Record {
                key: None,
                value: Some(event(i)),
                timestamp: 1_700_000_000_000 + i as i64,
                partition: (i % 4) as i32,
                offset: -1,
                headers: Vec::new(),
            })
            .collect();
        cluster.produce_and_wait(&topic, &batch).expect("produce");
    }
    println!(
        "    produced {events} input events in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let plain = plain_consumer(&cluster, &topic, events);
    let batch = batch_consumer(&cluster, &topic, events);
    // The same queries at-least-once and exactly-once, each over all of the input.
    let queries = [
        ("stateless", CSAS.to_string()),
        ("tumbling", TUMBLING.to_string()),
    ];
    for (label, sql) in queries {
        let mut rates = Vec::new();
        for exactly_once in [false, true] {
            let guarantee = if exactly_once { "eos" } else { "alos" };
            let sql = sql.replacen(" AS SELECT", &format!("_{guarantee}_{suffix} AS SELECT"), 1);
            let (query, id) = created_query(&mut engine, &sql);
            let config = eddy_kafka::TaskConfig {
                exactly_once,
                ..eddy_kafka::TaskConfig::new(
                    format!("bench_{guarantee}_{id}_{suffix}"),
                    "earliest",
                )
            };
            let (start, cpu0) = (Instant::now(), cpu_seconds());
            let task =
                eddy_kafka::start_persistent(cluster.clone(), query, &config).expect("start");
            while task.stats.consumed.load(Ordering::Relaxed) < events {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Stopping settles what is in flight (and writes the aggregation's state): counted.
            let stats = task.stats.clone();
            task.stop();
            let (wall, cpu) = (start.elapsed(), cpu_seconds() - cpu0);
            let produced = stats.produced.load(Ordering::Relaxed);
            report(
                &format!("(b) through the broker, {label}, {guarantee}"),
                events,
                wall,
                cpu,
            );
            println!("    {produced} output records (the broker's own CPU is not counted)");
            rates.push(events as f64 / wall.as_secs_f64());
        }
        println!(
            "    exactly-once costs {:.0}% of the at-least-once rate ({label}); at-least-once runs at {:.0} % of the plain consumer's rate, {:.0} % of the batch consumer's",
            100.0 * (1.0 - rates[1] / rates[0]),
            100.0 * rates[0] / plain,
            100.0 * rates[0] / batch
        );
    }
    metrics_cost(&cluster, &mut engine, events, suffix);
}

/// A consumer with the settings of a query's input consumer, subscribed to `topic` from its start
/// in a group of its own (named after `what`).
fn baseline_consumer(cluster: &KafkaCluster, what: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = cluster
        .reader_config()
        .set("group.id", format!("bench_{what}_{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// The baseline of (b): a plain rdkafka consumer with the settings of a query's input consumer,
/// reading the topic from its start in a group of its own and doing nothing with the records (the
/// group's join counted, as it is for the queries). Returns events per second.
fn plain_consumer(cluster: &KafkaCluster, topic: &str, events: u64) -> f64 {
    let consumer = baseline_consumer(cluster, "plain", topic);
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let (mut read, mut bytes) = (0u64, 0usize);
    while read < events {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                read += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => panic!("consumer: {e}"),
            None => {}
        }
    }
    let wall = start.elapsed();
    report(
        "(b) baseline: a plain rdkafka consumer reading the same topic",
        events,
        wall,
        cpu_seconds() - cpu0,
    );
    println!("    {bytes} bytes of values");
    events as f64 / wall.as_secs_f64()
}

/// The second baseline of (b): librdkafka's batch consumption (`batch_read`), as Eddy's queries
/// read. Returns events per second.
fn batch_consumer(cluster: &KafkaCluster, topic: &str, events: u64) -> f64 {
    let mut reader = BatchReader::new(baseline_consumer(cluster, "batch", topic));
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let (mut read, mut bytes) = (0u64, 0usize);
    while read < events {
        read += reader.read(100, |value| bytes += value.len()) as u64;
    }
    let wall = start.elapsed();
    report(
        "(b) baseline: a batch librdkafka consumer reading the same topic",
        events,
        wall,
        cpu_seconds() - cpu0,
    );
    println!("    {bytes} bytes of values");
    events as f64 / wall.as_secs_f64()
}

/// Runs `sql` and returns the query it created, with its id.
fn created_query(engine: &mut Engine, sql: &str) -> (eddy_runtime::PersistentQuery, String) {
    let mut id = String::new();
    for s in eddy_sql::parse(sql).expect("parse") {
        if let Outcome::QueryCreated { query_id, .. } =
            engine.execute(&s, &Default::default()).expect("execute")
        {
            id = query_id;
        }
    }
    (engine.query(&id).expect("query").clone(), id)
}

/// (g): the stateless query at-least-once with its per-record metrics (bytes read, end-to-end
/// latency) on and off, runs alternating, each reading all of the input with a group of its own.
fn metrics_cost(cluster: &Arc<KafkaCluster>, engine: &mut Engine, events: u64, suffix: u32) {
    let sql = CSAS.replacen(" AS SELECT", &format!("_metrics_{suffix} AS SELECT"), 1);
    let (query, id) = created_query(engine, &sql);
    let runs: usize = flag("--metrics-runs").unwrap_or(3);
    let mut cpu_rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 0..runs * 2 {
        let metrics = run % 2 == 0;
        let config = eddy_kafka::TaskConfig {
            metrics,
            ..eddy_kafka::TaskConfig::new(format!("bench_metrics_{id}_{run}"), "earliest")
        };
        let (start, cpu0) = (Instant::now(), cpu_seconds());
        let task =
            eddy_kafka::start_persistent(cluster.clone(), query.clone(), &config).expect("start");
        while task.stats.consumed.load(Ordering::Relaxed) < events {
            std::thread::sleep(Duration::from_millis(20));
        }
        task.stop();
        let (wall, cpu) = (start.elapsed(), cpu_seconds() - cpu0);
        let on = if metrics { "on" } else { "off" };
        report(
            &format!("(g) through the broker, stateless, metrics {on}"),
            events,
            wall,
            cpu,
        );
        cpu_rates[usize::from(!metrics)].push(events as f64 / cpu);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (on, off) = (median(&mut cpu_rates[0]), median(&mut cpu_rates[1]));
    println!(
        "(g) per-record metrics cost {:.1}% of the events per CPU-second (median of {runs}: on {on:.0}, off {off:.0}; the broker's noise is larger than the difference)",
        100.0 * (1.0 - on / off)
    );
    // What the metrics add, measured alone on the same number of records in memory: the bytes of
    // each polled batch summed, each delivered run's timestamps put in the latency histogram.
    let records: Vec<(Vec<u8>, i64)> = (0..events)
        .map(|i| (event(i), 1_700_000_000_000 + i as i64))
        .collect();
    let (bytes, latency) = (
        std::sync::atomic::AtomicU64::new(0),
        eddy_kafka::latency::Latency::default(),
    );
    let start = Instant::now();
    for chunk in records.chunks(500) {
        let n: usize = chunk.iter().map(|(v, _)| v.len()).sum();
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        latency.observe(1_700_000_100_000, chunk.iter().map(|(_, t)| *t));
    }
    let alone_ns = start.elapsed().as_nanos() as f64 / events as f64;
    let off_ns = 1e9 / off;
    println!(
        "(g) the per-record metrics alone: {alone_ns:.1} ns per record, {:.2}% of the {off_ns:.0} ns of CPU per event the query takes without them ({} histogram observations)",
        100.0 * alone_ns / off_ns,
        latency.snapshot().count
    );
}

/// Runs a stateful query with per-commit emission; returns events per CPU-second.
fn stateful(label: &str, query: &str, records: &[Record]) -> f64 {
    let (engine, id) = planned(&[CREATE, query]);
    let query = engine.query(&id).expect("query");
    let pipeline = eddy_runtime::Pipeline::clone(&query.pipeline).per_commit();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut produced = 0usize;
    for (i, chunk) in records.chunks(BATCH).enumerate() {
        pipeline.process(chunk).expect("process");
        if i % 8 == 7 {
            let flushed = pipeline.flush().expect("flush").expect("aggregates");
            produced += query.sink_spec.records(&flushed).expect("encode").len();
        }
    }
    let flushed = pipeline.flush().expect("flush").expect("aggregates");
    produced += query.sink_spec.records(&flushed).expect("encode").len();
    let cpu = cpu_seconds() - cpu0;
    report(label, records.len() as u64, start.elapsed(), cpu);
    println!("    {produced} output records");
    records.len() as f64 / cpu
}

fn aggregations(events: u64, repeat: usize) {
    let records: Vec<Record> = (0..events)
        .map(|i| Record {
            key: None,
            value: Some(event(i)),
            timestamp: i as i64,
            partition: 0,
            offset: i as i64,
            headers: Vec::new(),
        })
        .collect();
    let mut rates: Vec<f64> = (1..=repeat)
        .map(|run| stateful(&format!("(c) tumbling, run {run}"), TUMBLING, &records))
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "(c) tumbling: median {:.0} events per CPU-second over {repeat} runs",
        rates[rates.len() / 2]
    );
    windowed_pull_queries(TUMBLING, &records);
}

/// (d): one record per key, made batch by batch so that the process holds little but the table's state;
/// run first, before other scenarios leave freed memory behind for the allocator to reuse.
fn count_table_memory() {
    const COUNTS: &str =
        "CREATE TABLE counts AS SELECT sensor_id, COUNT(*) AS n FROM readings GROUP BY sensor_id;";
    let (engine, id) = planned(&[CREATE, COUNTS]);
    // The engine's own pipeline (per-commit emission: no cache setting says otherwise), so that the
    // pull queries of (e) read the state it fills.
    let pipeline = engine.query(&id).expect("query").pipeline.clone();
    let before = resident_mb();
    let keys = 1_000_000u64;
    for (n, start) in (0..keys).step_by(BATCH).enumerate() {
        let chunk: Vec<Record> = (start..(start + BATCH as u64).min(keys))
            .map(|i| Record {
                key: None,
                value: Some(
                    format!(
                        r#"{{"sensor_id":"vehicle-{i:07}","ts":0,"temp":1.0,"rpm":1,"speed":1.0}}"#
                    )
                    .into_bytes(),
                ),
                timestamp: i as i64,
                partition: 0,
                offset: i as i64,
                headers: Vec::new(),
            })
            .collect();
        pipeline.process(&chunk).expect("process");
        if n % 8 == 7 {
            pipeline.flush().expect("flush");
        }
    }
    pipeline.flush().expect("flush");
    println!(
        "(d) COUNT table with 1,000,000 keys: process resident {:.0} MB, {:.0} MB more than before the table was filled",
        resident_mb(),
        resident_mb() - before
    );
    pull_queries(&engine);
}

/// (e): pull queries over the (d) table: key lookups, and a query that must read every row.
fn pull_queries(engine: &Engine) {
    time_pulls(
        engine,
        "(e)",
        "1,000,000 keys",
        |i| {
            let key = (i * 7_919) % 1_000_000;
            format!("SELECT * FROM counts WHERE sensor_id = 'vehicle-{key:07}';")
        },
        "SELECT * FROM counts WHERE n > 1;",
    );
}

/// (f): pull queries over the windows of the (c) table, filled with 1,000,000 events (1,000 sensors,
/// 100 ten-second windows each): every window of a key, and a query that reads every window.
fn windowed_pull_queries(query: &str, records: &[Record]) {
    let (engine, id) = planned(&[CREATE, query]);
    let pipeline = engine.query(&id).expect("query").pipeline.clone();
    for chunk in records[..records.len().min(1_000_000)].chunks(BATCH) {
        pipeline.process(chunk).expect("process");
    }
    time_pulls(
        &engine,
        "(f)",
        "100,000 windows",
        |i| {
            format!(
                "SELECT * FROM per_sensor WHERE sensor_id = 's-{}';",
                i % 1000
            )
        },
        "SELECT * FROM per_sensor WHERE n > 100000;",
    );
}

/// Times pull queries by key (`by_key(i)` for the i-th) and one query that reads every row.
fn time_pulls(
    engine: &Engine,
    label: &str,
    size: &str,
    by_key: impl Fn(u64) -> String,
    scan: &str,
) {
    let run = |sql: &str| {
        let stmt = eddy_sql::parse(sql).expect("parse").remove(0);
        let eddy_sql::statement::Statement::Select(q) = &stmt.statement else {
            panic!("a SELECT")
        };
        let query = engine.plan_pull(q, &Default::default()).expect("plan");
        query.execute().expect("execute").num_rows()
    };
    let lookups = 2_000u64;
    let start = Instant::now();
    let found: usize = (0..lookups).map(|i| run(&by_key(i))).sum();
    let per = start.elapsed().as_secs_f64() / lookups as f64;
    println!(
        "{label} pull query by key over {size}: {:.0} µs per query, planning included ({found} rows found)",
        per * 1e6
    );
    let start = Instant::now();
    let rows = run(scan);
    println!(
        "{label} pull query reading every row of the table: {:.0} ms ({rows} rows match)",
        start.elapsed().as_secs_f64() * 1e3
    );
}

fn main() {
    let events: u64 = flag("--events").unwrap_or(10_000_000);
    let repeat = flag("--repeat").unwrap_or(5).max(1);
    count_table_memory();
    let plain = in_memory("(a)", CSAS, events, repeat);
    let functions = in_memory("(a')", CSAS_FUNCTIONS, events, repeat);
    println!(
        "(a') five string/date functions in the projection: {:.0} % of the plain projection's rate",
        functions / plain * 100.0
    );
    aggregations(events, repeat.min(3));
    if let Some(b) = flag::<String>("--broker") {
        through_broker(events.min(flag("--broker-events").unwrap_or(2_000_000)), &b);
    }
}
