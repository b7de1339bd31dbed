//! Pull queries over HTTP: key lookups a second on one server, and their latency, over HTTP/1.1
//! (`/query`) and HTTP/2 (`/query-stream`, prior knowledge), from `--clients` concurrent clients for
//! `--seconds` each. The server (this package's binary, started for the run over the broker
//! `--broker`) holds a table an aggregation keeps (`COUNT(*)` per key over `--keys` keys); every
//! lookup asks for a key drawn in turn, and every answer is checked to hold that key's row.
//!
//! With `--restore`, the server is then killed with SIGKILL and started again, and the bench prints
//! how long until the table answers lookups of 128 keys with their final counts (its state restored
//! from the changelog).
//!
//!   cargo bench -p eddy-kafka -p eddy-server -p eddy-cli --bench pull -- --broker HOST:PORT
//!       [--keys 100000] [--clients 32] [--seconds 10] [--restore]
//! (naming the kafka and shell packages too reuses the release build's dependencies.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[path = "../../eddy-kafka/benches/flags.rs"]
mod flags;
mod server;
use flags::flag;
use server::{cpu_seconds, ksql, start_server};

fn key(i: u64) -> String {
    format!("k-{i:07}")
}

/// The table `counts` (`COUNT(*)` per key over `keys` keys, key `i` counted `i % 5 + 1` times, the
/// events produced straight to the stream's topic), once a lookup of the last key written answers.
async fn load(h2: &reqwest::Client, url: &str, broker: &str, keys: u64) -> anyhow::Result<()> {
    // A topic of this run's own: a broker used before may hold another run's.
    let topic = format!("pull_events_{}", std::process::id());
    ksql(
        h2,
        url,
        &format!(
            "CREATE STREAM events (id STRING KEY, v INT) WITH (kafka_topic='{topic}', value_format='JSON', partitions=4);\
             CREATE TABLE counts AS SELECT id, COUNT(*) AS n FROM events GROUP BY id;"
        ),
    )
    .await?;
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", "20")
        .create()?;
    let started = Instant::now();
    let mut rows = 0;
    for round in 0..5 {
        for i in (0..keys).filter(|i| i % 5 >= round) {
            let (k, v) = (key(i), format!("{{\"V\":{round}}}"));
            let mut record = BaseRecord::to(&topic).key(&k).payload(&v);
            while let Err((e, back)) = producer.send(record) {
                anyhow::ensure!(
                    e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull),
                    "{e}"
                );
                producer.poll(Duration::from_millis(10));
                record = back;
            }
            rows += 1;
        }
    }
    producer.flush(Duration::from_secs(60))?;
    anyhow::ensure!(
        final_counts(h2, url, keys).await,
        "the table never held the final counts of its last keys"
    );
    println!(
        "table COUNTS: {keys} keys from {rows} rows, answering after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits (five minutes at most) until lookups of the last 64 keys written and of 64 keys spread
/// over all answer with their final counts; false if they never do. The last keys of the last
/// round land in every partition: once they hold their final counts, every partition has been
/// read to its end.
async fn final_counts(h2: &reqwest::Client, url: &str, keys: u64) -> bool {
    let last = (0..keys).rev().filter(|i| i % 5 == 4).take(64);
    let spread = (0..64).map(|i| i * keys / 64);
    let probes: Vec<u64> = last.chain(spread).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    'wait: while Instant::now() < deadline {
        for i in &probes {
            if lookup(h2, url, Protocol::Http2, *i).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'wait;
            }
        }
        return true;
    }
    false
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    Http1,
    Http2,
}

/// Looks key `i` up, checking the answer holds its row and count.
async fn lookup(
    client: &reqwest::Client,
    url: &str,
    protocol: Protocol,
    i: u64,
) -> anyhow::Result<()> {
    let k = key(i);
    let sql = format!("SELECT * FROM counts WHERE id = '{k}';");
    // ksqlDB's two endpoints name their fields differently.
    let (path, body) = match protocol {
        Protocol::Http1 => (
            "query",
            serde_json::json!({"ksql": sql, "streamsProperties": {}}),
        ),
        Protocol::Http2 => (
            "query-stream",
            serde_json::json!({"sql": sql, "properties": {}}),
        ),
    };
    let r = client
        .post(format!("{url}/{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "{}", r.status());
    let body = r.text().await?;
    let row = format!("\"{k}\",{}]", i % 5 + 1);
    anyhow::ensure!(body.contains(&row), "no row {row} in {body:.300}");
    Ok(())
}

/// `clients` clients looking keys up for `seconds`; prints the rate and the latency.
async fn hammer(
    client: reqwest::Client,
    url: &str,
    server: u32,
    protocol: Protocol,
    keys: u64,
    clients: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds(server);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, next) = (client.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            while Instant::now() < until {
                let i = next.fetch_add(7919, Ordering::Relaxed) % keys;
                let t = Instant::now();
                lookup(&client, &url, protocol, i).await?;
                took.push(t.elapsed());
            }
            anyhow::Ok(took)
        }));
    }
    let mut took = Vec::new();
    for t in tasks {
        took.extend(t.await??);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server) - cpu_before;
    anyhow::ensure!(!took.is_empty(), "no lookup finished in {seconds} s");
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!(
        "pull by key over {protocol:?}, {clients} clients: {} lookups in {wall:.1} s: {:.0} lookups/s ({:.0} per CPU-second of the server), p50 {:.2} ms, p99 {:.2} ms",
        took.len(),
        took.len() as f64 / wall,
        took.len() as f64 / cpu,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let broker: String = flag("--broker").ok_or_else(|| anyhow::anyhow!("--broker HOST:PORT"))?;
    let keys: u64 = flag("--keys").unwrap_or(100_000);
    let clients: u64 = flag("--clients").unwrap_or(32);
    let seconds: u64 = flag("--seconds").unwrap_or(10);
    let mut server = start_server(&broker, "pull", &[])?;
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_secs(60);
    let h1 = reqwest::Client::builder()
        .http1_only()
        .timeout(timeout)
        .build()?;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(timeout)
        .build()?;
    runtime.block_on(async {
        load(&h2, &server.url, &broker, keys).await?;
        for (client, protocol) in [(&h1, Protocol::Http1), (&h2, Protocol::Http2)] {
            let client = client.clone();
            hammer(client, &server.url, pid, protocol, keys, clients, seconds).await?;
        }
        anyhow::Ok(())
    })?;
    if std::env::args().any(|a| a == "--restore") {
        // kill -9, then the same server again: its table's state comes back from the changelog.
        let killed = Instant::now();
        server.kill_and_restart()?;
        let answering = killed.elapsed().as_secs_f64();
        let restored = runtime.block_on(final_counts(&h2, &server.url, keys));
        anyhow::ensure!(restored, "the table did not answer again after the restart");
        println!(
            "restore after kill -9 of a table of {keys} keys: the server answers after {answering:.1} s, the table's lookups answer (final counts) after {:.1} s",
            killed.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
