//! The in-memory queries over the newline-delimited JSON file the Flink baseline reads
//! (`../shared/perf/flink/gen_data.py`: sensor events of 1,000 keys, 100,000 a second of event time),
//! each beside its baselines measured in the same run (issue 19):
//!   - decoding alone: every line into a typed struct with serde_json and with sonic-rs (the fastest
//!     decoder we know of; built here without `-C target-cpu=native`, as Eddy is), nothing else done
//!     with it;
//!   - the stateless query `SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm ... WHERE temp > 25.0 AND
//!     rpm > 1000` (decode, filter, project; then encoding the output records, which Flink's blackhole
//!     sink does not do);
//!   - the tumbling query `COUNT(*), SUM(temp), MAX(speed) ... WINDOW TUMBLING (SIZE 10 SECONDS) GROUP
//!     BY sensor_id` (event time from `ts`, 1 s grace like Flink's watermark) emitting per commit (a
//!     flush every 8 batches), per record (ksqlDB with caching off) and only final windows;
//!   - with `--flink RESULTS --flink-label LABEL`, Flink's figures for the same two queries on the same
//!     file from `bench_flink.py`'s results (parallelism 1, the warm runs), and the ratios.
//!
//! Figures are events per CPU-second of this process (one thread: wall time is about the same).
//!
//!   cargo bench -p eddy-kafka -p eddy-server -p eddy-cli --bench baseline -- --file events.json
//!       [--events N] [--repeat R] [--flink results.jsonl --flink-label LABEL]
//!       [--profile stateless|tumbling]   (only that scenario, per-commit, `repeat` times: for a profiler)

use std::hint::black_box;
use std::time::Instant;

use eddy_runtime::Record;

mod allocator;
mod cpu;
mod flags;
mod in_memory;
use cpu::cpu_seconds;
use flags::flag;
use in_memory::planned;

const CREATE: &str = "CREATE STREAM src (sensor_id STRING, ts BIGINT, temp DOUBLE, rpm INT, speed DOUBLE) WITH (kafka_topic='src', value_format='JSON', timestamp='ts', partitions=1);";
const FILTER: &str = "CREATE STREAM hot AS SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm FROM src WHERE temp > 25.0 AND rpm > 1000;";
const WINDOW: &str = "CREATE TABLE per_sensor AS SELECT sensor_id, COUNT(*) AS cnt, SUM(temp) AS sum_temp, MAX(speed) AS max_speed FROM src WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 1 SECOND) GROUP BY sensor_id";
const BATCH: usize = 4096;

/// One line of the file, as the decode baselines read it (the string borrowed, as Eddy's decoder
/// copies it straight into its column).
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read only through black_box
struct Event<'a> {
    sensor_id: &'a str,
    ts: i64,
    temp: f64,
    rpm: i32,
    speed: f64,
}

/// The file's first `limit` lines as records.
fn read(path: &str, limit: usize) -> Vec<Record> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .take(limit)
        .enumerate()
        .map(|(i, line)| Record {
            key: None,
            value: Some(line.to_vec()),
            timestamp: 0,
            partition: 0,
            offset: i as i64,
            headers: Vec::new(),
        })
        .collect()
}

/// The median of `repeat` runs of `run`, each returning the CPU-seconds it took; prints each run.
fn median_rate(label: &str, events: usize, repeat: usize, mut run: impl FnMut() -> f64) -> f64 {
    let mut rates: Vec<f64> = (1..=repeat)
        .map(|r| {
            let (start, cpu0) = (Instant::now(), cpu_seconds());
            let cpu = run().max(1e-9);
            let cpu_all = cpu_seconds() - cpu0;
            println!(
                "  {label}, run {r}: {:.2} s wall, {cpu_all:.2} CPU-s, {:.0} events per CPU-second",
                start.elapsed().as_secs_f64(),
                events as f64 / cpu
            );
            events as f64 / cpu
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn decode_serde_json(records: &[Record]) -> f64 {
    let cpu0 = cpu_seconds();
    for r in records {
        let e: Event =
            serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("JSON");
        black_box(e);
    }
    cpu_seconds() - cpu0
}

fn decode_sonic(records: &[Record]) -> f64 {
    let cpu0 = cpu_seconds();
    for r in records {
        let e: Event = sonic_rs::from_slice(r.value.as_deref().unwrap_or_default()).expect("JSON");
        black_box(e);
    }
    cpu_seconds() - cpu0
}

/// What a stateless run cost: CPU-seconds processing (decode, filter, project) and encoding.
struct Stateless {
    process: f64,
    encode: f64,
    rows: usize,
}

fn stateless(records: &[Record]) -> Stateless {
    let (engine, id) = planned(&[CREATE, FILTER]);
    let query = engine.query(&id).expect("query");
    let (mut process, mut encode, mut rows) = (0.0, 0.0, 0);
    for chunk in records.chunks(BATCH) {
        let t0 = cpu_seconds();
        let processed = query.pipeline.process(chunk).expect("process");
        let t1 = cpu_seconds();
        rows += query.sink_spec.records(&processed).expect("encode").len();
        process += t1 - t0;
        encode += cpu_seconds() - t1;
    }
    Stateless {
        process,
        encode,
        rows,
    }
}

/// How the tumbling query emits.
#[derive(Clone, Copy)]
enum Emission {
    PerCommit,
    PerRecord,
    Final,
}

/// CPU-seconds of the tumbling query over `records`, output encoded; prints the rows it emitted.
fn tumbling(records: &[Record], emission: Emission) -> f64 {
    let sql = match emission {
        Emission::Final => format!("{WINDOW} EMIT FINAL;"),
        _ => format!("{WINDOW};"),
    };
    let (engine, id) = planned(&[CREATE, &sql]);
    let query = engine.query(&id).expect("query");
    let pipeline = match emission {
        Emission::PerCommit => eddy_runtime::Pipeline::clone(&query.pipeline).per_commit(),
        _ => eddy_runtime::Pipeline::clone(&query.pipeline),
    };
    let cpu0 = cpu_seconds();
    let mut rows = 0;
    for (i, chunk) in records.chunks(BATCH).enumerate() {
        let processed = pipeline.process(chunk).expect("process");
        rows += query.sink_spec.records(&processed).expect("encode").len();
        if matches!(emission, Emission::PerCommit) && i % 8 == 7 {
            let flushed = pipeline.flush().expect("flush").expect("aggregates");
            rows += query.sink_spec.records(&flushed).expect("encode").len();
        }
    }
    if let Some(flushed) = pipeline.flush().expect("flush") {
        rows += query.sink_spec.records(&flushed).expect("encode").len();
    }
    let cpu = cpu_seconds() - cpu0;
    println!("    {rows} output rows");
    cpu
}

/// Flink's median warm rate (events per CPU-second of its JVM) for `query` over the JSON file at
/// parallelism 1, from `bench_flink.py`'s results under `label`.
fn flink_rate(results: &str, label: &str, query: &str) -> Option<f64> {
    let mut rates: Vec<f64> = results
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|r| {
            r["label"] == label
                && r["query"] == query
                && r["source"] == "json"
                && r["parallelism"] == 1
                && r["run"].as_u64().is_some_and(|run| run > 1)
        })
        .filter_map(|r| r["ev_per_cpu_s"].as_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied()
}

fn main() {
    let path: String = flag("--file").expect("--file PATH: the Flink baseline's events.json");
    let limit: usize = flag("--events").unwrap_or(usize::MAX);
    let repeat: usize = flag("--repeat").unwrap_or(3).max(1);
    let records = read(&path, limit);
    let n = records.len();
    println!("{n} events from {path}");
    // One scenario alone, for a profiler.
    match flag::<String>("--profile").as_deref() {
        Some("stateless") => {
            return (0..repeat).for_each(|_| {
                stateless(&records);
            });
        }
        Some("tumbling") => {
            return (0..repeat).for_each(|_| {
                tumbling(&records, Emission::PerCommit);
            });
        }
        Some(other) => panic!("--profile stateless|tumbling, not {other}"),
        None => {}
    }

    let serde = median_rate("decode alone, serde_json", n, repeat, || {
        decode_serde_json(&records)
    });
    let sonic = median_rate("decode alone, sonic-rs", n, repeat, || {
        decode_sonic(&records)
    });
    let fastest = serde.max(sonic);

    let mut with_encode = Vec::new();
    let process = median_rate("stateless, decode+filter+project", n, repeat, || {
        let run = stateless(&records);
        println!(
            "    {} output rows; encoding them {:.2} CPU-s more",
            run.rows, run.encode
        );
        with_encode.push(n as f64 / (run.process + run.encode));
        run.process
    });
    with_encode.sort_by(f64::total_cmp);
    let encoded = with_encode[with_encode.len() / 2];

    let runs = repeat.min(3);
    let per_commit = median_rate("tumbling, per-commit emission", n, runs, || {
        tumbling(&records, Emission::PerCommit)
    });
    let final_only = median_rate("tumbling, EMIT FINAL", n, runs, || {
        tumbling(&records, Emission::Final)
    });
    let per_record = median_rate("tumbling, per-record emission", n, 1, || {
        tumbling(&records, Emission::PerRecord)
    });

    let flink = flag::<String>("--flink").map(|file| {
        let results = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let label: String = flag("--flink-label").unwrap_or_default();
        (
            flink_rate(&results, &label, "filter"),
            flink_rate(&results, &label, "window"),
        )
    });

    let m = |rate: f64| format!("{:>6.2} M", rate / 1e6);
    let ratio = |rate: f64, of: Option<f64>| {
        of.map_or_else(String::new, |of| format!("{:>5.0} %", rate / of * 100.0))
    };
    let (flink_filter, flink_window) = flink.unwrap_or((None, None));
    let flink_cell = |rate: Option<f64>| rate.map_or_else(|| "     -".to_string(), m);
    println!("\nevents per CPU-second over {n} events of {path} (median of {repeat} runs)");
    println!(
        "{:<44} {:>9} {:>10} {:>9} {:>9}",
        "", "Eddy", "of fastest", "Flink", "of Flink"
    );
    println!("{:<44} {}", "decode alone, serde_json", m(serde));
    println!("{:<44} {}", "decode alone, sonic-rs", m(sonic));
    let row = |name: &str, rate: f64, flink: Option<f64>, of_fastest: bool| {
        println!(
            "{:<44} {} {:>10} {:>9} {:>9}",
            name,
            m(rate),
            if of_fastest {
                ratio(rate, Some(fastest))
            } else {
                String::new()
            },
            flink_cell(flink),
            ratio(rate, flink)
        );
    };
    row("stateless: decode, filter, project", process, None, true);
    row(
        "stateless: and encode the output",
        encoded,
        flink_filter,
        true,
    );
    row(
        "tumbling, per-commit emission",
        per_commit,
        flink_window,
        false,
    );
    row("tumbling, EMIT FINAL", final_only, flink_window, false);
    row("tumbling, per-record emission", per_record, None, false);
}
