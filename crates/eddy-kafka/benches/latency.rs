//! End-to-end latency through a broker: a producer writes events at a steady rate, each carrying the
//! microsecond it was sent; a stateless CSAS (`SELECT id, sent FROM lat_in`, Eddy's query task as the
//! server runs it, at-least-once) copies them to its output topic; two consumers read the input topic
//! (the broker's own produce → consume latency) and the output topic (through Eddy) at the same time,
//! so both are measured on the same events in the same run. Prints p50/p90/p99/max of each and what
//! Eddy adds. With `--scoring`, the query is the founding story's scoring CSAS instead: each event
//! carries a car's 14 readings and the query scores it with `IS_ANOMALY('autoencoder@1', ...)` (the
//! anomaly plugin; run `scripts/build-plugins` first).
//!
//!   cargo bench -p eddy-kafka -p eddy-server -p eddy-cli --bench latency -- --broker HOST:PORT
//!       [--rate 2000] [--seconds 10] [--fetch-wait 5] [--scoring]
//!   ... --rate max [--events 2000000]
//! (`--fetch-wait`: the measuring consumers' `fetch.wait.max.ms`. `--rate max` finds the peak of the
//! whole pipeline on this machine — the producer sending as fast as it can, the broker, Eddy and
//! the measuring consumers sharing its cores: the events over the time from the first sent to the
//! last read on the output topic.)
//! (naming the server and shell packages too reuses the release build's dependencies.)

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use eddy_kafka::KafkaCluster;
use eddy_runtime::Engine;

mod allocator;
mod batch_read;
mod flags;
mod telemetry;
use batch_read::BatchReader;
use flags::flag;
use telemetry::{FEATURES, readings};

/// Gives the engine the built plugins (`scripts/build-plugins`) and the repository's models.
fn with_plugins(engine: &mut Engine) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let plugins = eddy_runtime::functions::PluginDir::new(&root.join("target/plugins/dir"))
        .unwrap_or_else(|e| panic!("{e}: run scripts/build-plugins first"));
    let report = plugins.reload();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    engine.properties.insert(
        "ksql.functions._global_.model_dir".into(),
        root.join("udfs/anomaly/models").display().to_string(),
    );
    engine.attach_plugins(Arc::new(plugins));
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What a measuring consumer saw: each event's latency in microseconds (the time it was read minus
/// the time it was sent), and when the last one was read.
struct Seen {
    latencies: Vec<u64>,
    last_read: u64,
}

/// Reads `topic` from its start until `want` events arrived (or `stop`), a batch at a time.
fn latencies(
    bootstrap: &str,
    topic: &str,
    want: usize,
    fetch_wait: u32,
    stop: Arc<AtomicBool>,
) -> Seen {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("latency-{topic}-{}", now_us()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // The broker may answer a fetch only when its wait ends: a short one measures closely.
        .set("fetch.wait.max.ms", fetch_wait.to_string())
        .create()
        .expect("consumer");
    // Assigned, not subscribed: no group to join before the first fetch.
    let mut partitions = TopicPartitionList::new();
    for p in 0..4 {
        partitions
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&partitions).expect("assign");
    let mut reader = BatchReader::new(consumer);
    let mut seen = Seen {
        latencies: Vec::with_capacity(want),
        last_read: 0,
    };
    while seen.latencies.len() < want && !stop.load(Ordering::Relaxed) {
        // Read when the batch came: its messages were all there to take at once.
        let mut read = None;
        let latencies = &mut seen.latencies;
        reader.read(100, |value| {
            let read = *read.get_or_insert_with(now_us);
            if let Some(sent) = sent_of(value) {
                latencies.push(read.saturating_sub(sent));
            }
        });
        if let Some(read) = read {
            seen.last_read = read;
        }
    }
    seen
}

/// The microsecond an event was sent: the number after `"sent":` (the input) or `"SENT":` (the
/// output), read without decoding the rest.
fn sent_of(value: &[u8]) -> Option<u64> {
    let at = value
        .windows(7)
        .position(|w| w.eq_ignore_ascii_case(br#""sent":"#))?;
    let digits = &value[at + 7..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn summary(label: &str, mut v: Vec<u64>) -> [f64; 3] {
    v.sort_unstable();
    let [p50, p90, p99] = [0.5, 0.9, 0.99].map(|p| percentile(&v, p));
    println!(
        "{label}: {} events, p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        v.len(),
        percentile(&v, 1.0)
    );
    [p50, p90, p99]
}

fn main() {
    let bootstrap: String = flag("--broker").expect("--broker HOST:PORT");
    // `--rate max`: the pipeline's peak, the events sent as fast as the producer can.
    let rate: Option<u64> = match flag::<String>("--rate").as_deref() {
        Some("max") => None,
        other => Some(other.and_then(|r| r.parse().ok()).unwrap_or(2000)),
    };
    let seconds: u64 = flag("--seconds").unwrap_or(10);
    let fetch_wait: u32 = flag("--fetch-wait").unwrap_or(5);
    let events = match rate {
        Some(rate) => (rate * seconds) as usize,
        None => flag("--events").unwrap_or(2_000_000),
    };
    let cluster = Arc::new(KafkaCluster::connect(&bootstrap).expect("connect"));
    cluster.wait_ready(Duration::from_secs(10)).expect("broker");
    let suffix = std::process::id();
    let (input, output) = (format!("lat_in_{suffix}"), format!("LAT_OUT_{suffix}"));
    let scoring = std::env::args().any(|a| a == "--scoring");
    let mut engine = Engine::new(cluster.clone());
    let sql = if scoring {
        with_plugins(&mut engine);
        let columns: Vec<String> = FEATURES.iter().map(|f| format!("{f} DOUBLE")).collect();
        format!(
            "CREATE STREAM lat_in_{suffix} (id BIGINT, sent BIGINT, {}) WITH (kafka_topic='{input}', value_format='JSON', partitions=4);
             CREATE STREAM lat_out_{suffix} AS SELECT id, sent, IS_ANOMALY('autoencoder@1', {}) AS alert FROM lat_in_{suffix};",
            columns.join(", "),
            FEATURES.join(", ")
        )
    } else {
        format!(
            "CREATE STREAM lat_in_{suffix} (id BIGINT, sent BIGINT) WITH (kafka_topic='{input}', value_format='JSON', partitions=4);
             CREATE STREAM lat_out_{suffix} AS SELECT id, sent FROM lat_in_{suffix};"
        )
    };
    let mut id = None;
    for s in eddy_sql::parse(&sql).expect("parse") {
        if let eddy_runtime::Outcome::QueryCreated { query_id, .. } =
            engine.execute(&s, &Default::default()).expect("execute")
        {
            id = Some(query_id);
        }
    }
    let query = engine
        .query(&id.expect("the CSAS made a query"))
        .expect("query")
        .clone();
    let config = eddy_kafka::TaskConfig::new(format!("latency_{suffix}"), "earliest");
    let task = eddy_kafka::start_persistent(cluster.clone(), query, &config).expect("start");

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [input.clone(), output]
        .into_iter()
        .map(|topic| {
            let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
            thread::spawn(move || latencies(&bootstrap, &topic, events, fetch_wait, stop))
        })
        .collect();
    // Both consumers and the query settle into their groups before the first event.
    thread::sleep(Duration::from_secs(3));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let (started, first_sent) = (Instant::now(), now_us());
    let mut value = String::new();
    for i in 0..events {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        value.clear();
        let _ = write!(value, r#"{{"id":{i},"sent":{}"#, now_us());
        if scoring {
            let _ = write!(value, ",{}", readings(i));
        }
        value.push('}');
        let key = (i % 64).to_string();
        while let Err((e, _)) = producer.send(BaseRecord::to(&input).key(&key).payload(&value)) {
            if !matches!(
                e.rdkafka_error_code(),
                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
            ) {
                eprintln!("produce: {e}");
            }
            producer.poll(Duration::from_millis(1));
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    // Whatever has not arrived 10 s after the last event is counted as missing.
    let watchdog = {
        let stop = stop.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(10));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut results = readers.into_iter().map(|r| r.join().expect("reader"));
    let (broker, eddy) = (results.next(), results.next());
    drop(watchdog);
    task.stop();
    let query = if scoring {
        "the scoring CSAS (IS_ANOMALY per event)"
    } else {
        "a stateless CSAS"
    };
    let (broker, eddy) = (broker.expect("input"), eddy.expect("output"));
    let Some(rate) = rate else {
        // The peak: every event out of Eddy, over the time from the first sent to the last read.
        let rate_of = |seen: &Seen| {
            events as f64 / (seen.last_read.saturating_sub(first_sent).max(1) as f64 / 1e6)
        };
        println!("{events} events sent as fast as the producer can, through {query}:");
        if eddy.latencies.len() < events {
            println!(
                "  not carried: 10 s after the last event the output topic's consumer had read {} of the {events} events",
                eddy.latencies.len()
            );
            return;
        }
        println!(
            "  peak through Eddy: {:.0} events/s (first sent to last read on the output topic); the input topic's consumer read at {:.0} events/s",
            rate_of(&eddy),
            rate_of(&broker)
        );
        return;
    };
    println!("{events} events at {rate}/s, keyed over 4 partitions, through {query}:");
    // Every event must arrive: a figure over part of them would flatter. When some did not, the
    // rate was not sustained (by Eddy, or by the broker and the measuring clients themselves).
    if eddy.latencies.len() < events || broker.latencies.len() < events {
        println!(
            "  not sustained: 10 s after the last event the input topic's consumer had read {} and the output topic's {} of the {events} events; no latency figures",
            broker.latencies.len(),
            eddy.latencies.len()
        );
        return;
    }
    let b = summary("  the broker alone (input topic)", broker.latencies);
    let e = summary("  through Eddy (output topic)   ", eddy.latencies);
    println!(
        "  Eddy adds: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        e[0] - b[0],
        e[1] - b[1],
        e[2] - b[2]
    );
}
