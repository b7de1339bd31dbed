//! Throughput of the demo query `SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm FROM readings WHERE
//! temp > 25.0 AND rpm > 1000` over events shaped like the demo's:
//!   (a) from in-memory records (decode → filter → project → encode),
//!   (b) through a Kafka broker (consume → process → produce → commit), when `--broker HOST:PORT` is given.
//! Prints events per second and per CPU-second of this process.
//!
//!   cargo bench -p eddy-kafka -p eddy-server -p eddy-cli --bench throughput -- [--events N] [--repeat R]
//!       [--broker HOST:PORT] [--broker-events N]
//! (naming the server and shell packages too reuses the release build's dependencies.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use eddy_kafka::KafkaCluster;
use eddy_runtime::{Engine, MemoryTopics, Outcome, Record, TopicAdmin};

const CREATE: &str = "CREATE STREAM readings (sensor_id STRING, ts BIGINT, temp DOUBLE, rpm INT, speed DOUBLE) WITH (kafka_topic='readings', value_format='JSON', partitions=4);";
const CSAS: &str = "CREATE STREAM hot AS SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm FROM readings WHERE temp > 25.0 AND rpm > 1000;";
const BATCH: usize = 4096;

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a complete rusage into the pointer on success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return 0.0;
        }
        usage.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

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

fn plan(admin: Arc<dyn TopicAdmin>) -> (Engine, String) {
    let mut engine = Engine::new(admin);
    let mut id = String::new();
    for sql in [CREATE, CSAS] {
        for s in eddy_sql::parse(sql).expect("parse") {
            if let Outcome::QueryCreated { query_id, .. } =
                engine.execute(&s, &Default::default()).expect("execute")
            {
                id = query_id;
            }
        }
    }
    (engine, id)
}

/// Runs (a) `repeat` times over the same records and prints every run and the median: on a shared
/// machine single runs vary by 10-20 %.
fn in_memory(events: u64, repeat: usize) {
    let (engine, id) = plan(Arc::new(MemoryTopics::new()));
    let query = engine.query(&id).expect("query").clone();
    let records: Vec<Record> = (0..events)
        .map(|i| Record {
            key: None,
            value: Some(event(i)),
            timestamp: i as i64,
            partition: (i % 4) as i32,
            offset: i as i64,
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
            &format!("(a) in-memory, run {run}"),
            events,
            start.elapsed(),
            cpu,
        );
        println!("    {produced} output records");
        rates.push(events as f64 / cpu);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "(a) in-memory: median {:.0} events per CPU-second over {repeat} runs",
        rates[rates.len() / 2]
    );
}

fn through_broker(events: u64, bootstrap: &str) {
    let cluster = Arc::new(KafkaCluster::connect(bootstrap).expect("connect"));
    cluster.wait_ready(Duration::from_secs(10)).expect("broker");
    let suffix = std::process::id();
    let create = CREATE.replace(
        "kafka_topic='readings'",
        &format!("kafka_topic='bench_readings_{suffix}'"),
    );
    let mut engine = Engine::new(cluster.clone());
    let mut id = String::new();
    for sql in [
        create.as_str(),
        &CSAS.replace("hot AS", &format!("hot_{suffix} AS")),
    ] {
        for s in eddy_sql::parse(sql).expect("parse") {
            if let Outcome::QueryCreated { query_id, .. } =
                engine.execute(&s, &Default::default()).expect("execute")
            {
                id = query_id;
            }
        }
    }
    let topic = format!("bench_readings_{suffix}");
    let t0 = Instant::now();
    for start in (0..events).step_by(100_000) {
        let batch: Vec<Record> = (start..(start + 100_000).min(events))
            .map(|i| Record {
                key: None,
                value: Some(event(i)),
                timestamp: i as i64,
                partition: (i % 4) as i32,
                offset: -1,
            })
            .collect();
        cluster.produce_and_wait(&topic, &batch).expect("produce");
    }
    println!(
        "    produced {events} input events in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let query = engine.query(&id).expect("query").clone();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let task = eddy_kafka::start_persistent(
        cluster.clone(),
        query,
        format!("bench_{suffix}"),
        "earliest".into(),
    )
    .expect("start");
    while task.stats.consumed.load(Ordering::Relaxed) < events {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (wall, cpu) = (start.elapsed(), cpu_seconds() - cpu0);
    let produced = task.stats.produced.load(Ordering::Relaxed);
    task.stop();
    report("(b) through the broker", events, wall, cpu);
    println!("    {produced} output records (the broker's own CPU is not counted)");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let events: u64 = value("--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let repeat = value("--repeat")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    in_memory(events, repeat);
    if let Some(b) = value("--broker") {
        through_broker(
            events.min(
                value("--broker-events")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(2_000_000),
            ),
            &b,
        );
    }
}
