//! Push queries at scale: for each count of `--clients` (a list) and each of `--rates` (events a
//! second), that many concurrent push queries on one server (this package's binary over the broker
//! `--broker`), each `SELECT id, v FROM <stream> WHERE v >= 0 EMIT CHANGES` from the latest records
//! over its own HTTP/1.1 connection, while the events are produced for `--seconds`. Every client
//! must get every event. Prints, per round: how long the queries took to start, how many clients got
//! every row, the server's resident memory (now and its peak so far), threads and CPU, and how many
//! consumers it reads the stream with for push queries.
//!
//!   cargo bench -p eddy-kafka -p eddy-server -p eddy-cli --bench push -- --broker HOST:PORT
//!       [--clients 100,500,1000,2000] [--rates 50,1000] [--seconds 10]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[path = "../../eddy-kafka/benches/flags.rs"]
mod flags;
mod server;
use flags::flag;
use server::{cpu_seconds, ksql, start_server};

/// A list flag (`--clients 100,500`).
fn list(name: &str, default: &[u64]) -> Vec<u64> {
    flag::<String>(name).map_or_else(
        || default.to_vec(),
        |v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
    )
}

/// A field of `/proc/<pid>/status` (`VmRSS`, `VmHWM` in kB, `Threads`).
fn status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A gauge of the server's `/metrics`.
async fn gauge(client: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {name} in /metrics"))
}

/// One client: starts the push query, says so through `started`, then counts rows until it has
/// `expected` or `until` passes; returns the rows it got.
async fn client(
    client: reqwest::Client,
    url: String,
    stream: String,
    started: Arc<AtomicUsize>,
    expected: u64,
    until: Instant,
) -> anyhow::Result<u64> {
    let sql = format!("SELECT id, v FROM {stream} WHERE v >= 0 EMIT CHANGES;");
    let mut response = client
        .post(format!("{url}/query-stream"))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"sql": sql, "properties": {"auto.offset.reset": "latest"}})
                .to_string(),
        )
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "{}", response.status());
    started.fetch_add(1, Ordering::SeqCst);
    // The first line is the header; each further line a row.
    let mut lines = 0u64;
    while lines < expected + 1 {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => lines += chunk.iter().filter(|b| **b == b'\n').count() as u64,
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    Ok(lines.saturating_sub(1))
}

/// Produces `count` events of the stream at `rate` a second.
fn produce(broker: &str, topic: &str, count: u64, rate: u64) -> anyhow::Result<()> {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "1")
        .create()?;
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (k, v) = (format!("car-{}", i % 100), format!("{{\"V\":{i}}}"));
        producer
            .send(BaseRecord::to(topic).key(&k).payload(&v))
            .map_err(|(e, _)| e)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// A round: `clients` push queries while `rate` events a second are produced for `seconds`.
async fn round(
    http: &reqwest::Client,
    server: &server::Server,
    broker: &str,
    (stream, topic): (&str, &str),
    clients: u64,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    let (url, pid) = (&server.url, server.child.id());
    let expected = rate * seconds;
    let started = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(seconds + 120);
    let begun = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(client(
                http.clone(),
                url.clone(),
                stream.to_string(),
                started.clone(),
                expected,
                until,
            ))
        })
        .collect();
    while started.load(Ordering::SeqCst) < clients as usize && Instant::now() < until {
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected = started.load(Ordering::SeqCst);
    let took = begun.elapsed().as_secs_f64();
    let readers = gauge(http, url, "eddy_push_readers").await?;
    let (threads, resident) = (status(pid, "Threads"), status(pid, "VmRSS"));
    let cpu = cpu_seconds(pid);
    let (broker, topic) = (broker.to_string(), topic.to_string());
    let producing = Instant::now();
    tokio::task::spawn_blocking(move || produce(&broker, &topic, expected, rate)).await??;
    let (produced, cpu) = (Instant::now(), cpu_seconds(pid) - cpu);
    let producing = producing.elapsed().as_secs_f64();
    let mut got = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        match t.await? {
            Ok(rows) => got.push(rows),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let behind = produced.elapsed().as_secs_f64();
    let complete = got.iter().filter(|g| **g == expected).count();
    let fewest = got.iter().min().copied().unwrap_or(0);
    println!(
        "{clients} push queries at {rate} events/s for {seconds} s: {connected} started in {took:.1} s; \
         {complete} of {clients} clients got all {expected} rows (fewest {fewest}), the last {behind:.2} s after \
         the last event was produced; server: {:.0} MB resident (peak {:.0} MB), {threads} threads, {:.2} \
         CPU-s a second while producing, {readers} push reader(s)",
        resident as f64 / 1024.0,
        status(pid, "VmHWM") as f64 / 1024.0,
        cpu / producing,
    );
    if let Some(first) = failures.first() {
        println!("    {} clients failed, the first: {first}", failures.len());
    }
    // The clients have gone: wait until the server has closed their queries.
    let deadline = Instant::now() + Duration::from_secs(60);
    while gauge(http, url, "eddy_push_queries").await? > 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let broker: String = flag("--broker").ok_or_else(|| anyhow::anyhow!("--broker HOST:PORT"))?;
    let counts = list("--clients", &[100, 500, 1000, 2000]);
    let rates = list("--rates", &[50, 1000]);
    let seconds: u64 = flag("--seconds").unwrap_or(10);
    let most = counts.iter().max().copied().unwrap_or(0).to_string();
    let server = start_server(&broker, "push", &["--max-push-queries", &most])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let http = reqwest::Client::builder().http1_only().build()?;
        // A topic of this run's own: a broker used before may hold another run's.
        let (stream, topic) = (
            format!("cars_{}", std::process::id()),
            format!("push_cars_{}", std::process::id()),
        );
        ksql(
            &http,
            &server.url,
            &format!(
                "CREATE STREAM {stream} (id STRING KEY, v BIGINT) WITH (kafka_topic='{topic}', value_format='JSON', partitions=4);"
            ),
        )
        .await?;
        for rate in &rates {
            for clients in &counts {
                round(
                    &http,
                    &server,
                    &broker,
                    (&stream, &topic),
                    *clients,
                    *rate,
                    seconds,
                )
                .await?;
            }
        }
        Ok(())
    })
}
