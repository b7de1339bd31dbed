//! Exactly-once output through Kafka transactions, against librdkafka's mock cluster: the local
//! broker (nisshi) refuses transactions, the mock cluster takes them. The mock neither writes
//! transaction markers nor hides aborted records from read_committed readers, and keeps no offsets a
//! transaction commits, so these tests check that the transactional path runs end to end, commits
//! what it reads and recovers from an aborted transaction by reading its input again — not that
//! readers never see an aborted record (that is the broker's part).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use eddy_kafka::{KafkaCluster, QueryTask, TaskConfig, Transactions, changelog_topic};
use eddy_runtime::{Engine, Outcome, Record};

const RECORDS: u64 = 2_000;
const KEYS: u64 = 20;

fn input(range: std::ops::Range<u64>) -> Vec<Record> {
    range
        .map(|i| Record {
            key: Some(format!("k{}", i % KEYS).into_bytes()),
            value: Some(format!(r#"{{"N":{i}}}"#).into_bytes()),
            timestamp: 1_700_000_000_000 + i as i64,
            partition: (i % 2) as i32,
            offset: -1,
            headers: Vec::new(),
        })
        .collect()
}

/// A mock cluster with the input topic holding `RECORDS` records, and a connection to it that
/// requires transactions.
fn cluster_with_input(
    mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
) -> Arc<KafkaCluster> {
    mock.create_topic("tx_in", 2, 1).expect("topic");
    let cluster = Arc::new(
        KafkaCluster::connect_with(&mock.bootstrap_servers(), Transactions::On).expect("connect"),
    );
    cluster.wait_ready(Duration::from_secs(10)).expect("ready");
    cluster
        .produce_and_wait("tx_in", &input(0..RECORDS))
        .expect("produce");
    cluster
}

/// Plans `query` over the input stream, and starts it exactly-once in consumer group `group`.
fn start(cluster: &Arc<KafkaCluster>, query: &str, group: &str) -> QueryTask {
    let mut engine = Engine::new(cluster.clone());
    let mut id = String::new();
    let create = "CREATE STREAM tx_in (K STRING KEY, N BIGINT) WITH (kafka_topic='tx_in', value_format='JSON');";
    for sql in [create, query] {
        for s in eddy_sql::parse(sql).expect("parse") {
            if let Outcome::QueryCreated { query_id, .. } =
                engine.execute(&s, &Default::default()).expect("execute")
            {
                id = query_id;
            }
        }
    }
    let config = TaskConfig {
        exactly_once: true,
        ..TaskConfig::new(group.to_string(), "earliest")
    };
    eddy_kafka::start_persistent(
        cluster.clone(),
        engine.query(&id).expect("query").clone(),
        &config,
    )
    .expect("start")
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn values(cluster: &KafkaCluster, topic: &str) -> Vec<serde_json::Value> {
    cluster
        .read_records(topic, Duration::from_secs(30))
        .expect("read")
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().expect("value")).expect("json"))
        .collect()
}

#[test]
fn a_stateless_query_commits_its_output_and_reads_its_input_again_after_an_abort() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let cluster = cluster_with_input(&mock);
    mock.create_topic("TX_OUT", 2, 1).expect("topic");
    let task = start(
        &cluster,
        "CREATE STREAM tx_out AS SELECT K, N * 2 AS D FROM tx_in;",
        "tx_stateless",
    );
    let stats = task.stats.clone();
    wait_until("every record is committed", || {
        stats.produced.load(Ordering::Relaxed) == RECORDS
    });
    task.stop();
    // Every output record of a committed transaction counts once.
    assert_eq!(values(&cluster, "TX_OUT").len() as u64, RECORDS);

    // More input; the next attempt's first records are refused: its transaction is aborted, and
    // its input read again.
    cluster
        .produce_and_wait("tx_in", &input(RECORDS..2 * RECORDS))
        .expect("produce");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let task = start(
        &cluster,
        "CREATE STREAM tx_out AS SELECT K, N * 2 AS D FROM tx_in;",
        "tx_stateless",
    );
    let stats = task.stats.clone();
    let all_made = || {
        let made: BTreeSet<i64> = values(&cluster, "TX_OUT")
            .iter()
            .map(|v| v["D"].as_i64().expect("D"))
            .collect();
        made == (0..2 * RECORDS as i64).map(|n| 2 * n).collect()
    };
    wait_until("every input record made its row", || {
        stats.produced.load(Ordering::Relaxed) >= RECORDS && all_made()
    });
    task.stop();
    assert_eq!(
        stats.restarts.load(Ordering::Relaxed),
        0,
        "{:?}",
        stats.failure()
    );
    let last_error = stats.last_error.lock().expect("lock").clone();
    assert!(
        last_error.as_deref().is_some_and(|e| e.contains("aborted")),
        "{last_error:?}"
    );
}

#[test]
fn a_rebalance_between_two_servers_loses_no_record() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let first = cluster_with_input(&mock);
    mock.create_topic("TX_OUT", 2, 1).expect("topic");
    let query = "CREATE STREAM tx_out AS SELECT K, N * 2 AS D FROM tx_in;";
    let a = start(&first, query, "tx_moving");
    wait_until("the first server committed some", || {
        a.stats.produced.load(Ordering::Relaxed) > 0
    });
    // A second server (its own transactional id) joins the group: the partitions are revoked and
    // assigned again, with transactions open.
    let second = Arc::new(
        KafkaCluster::connect_with(&mock.bootstrap_servers(), Transactions::On).expect("connect"),
    );
    let b = start(&second, query, "tx_moving");
    // The mock cluster keeps no offsets a transaction commits: given a partition, the second server
    // reads it from the start.
    wait_until("the second server got partitions of its own", || {
        b.stats.consumed.load(Ordering::Relaxed) > 0
    });
    first
        .produce_and_wait("tx_in", &input(RECORDS..2 * RECORDS))
        .expect("produce");
    let all: BTreeSet<i64> = (0..2 * RECORDS as i64).map(|n| 2 * n).collect();
    wait_until("every input record made its row", || {
        let made: BTreeSet<i64> = values(&first, "TX_OUT")
            .iter()
            .map(|v| v["D"].as_i64().expect("D"))
            .collect();
        made == all
    });
    for task in [a, b] {
        let stats = task.stats.clone();
        task.stop();
        assert_eq!(
            stats.restarts.load(Ordering::Relaxed),
            0,
            "{:?}",
            stats.failure()
        );
    }
}

#[test]
fn an_aggregation_commits_its_writes_and_restores_what_committed() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let cluster = cluster_with_input(&mock);
    mock.create_topic("TX_COUNTS", 2, 1).expect("topic");
    mock.create_topic(&changelog_topic("tx_agg"), 2, 1)
        .expect("topic");
    let query =
        "CREATE TABLE tx_counts AS SELECT K, COUNT(*) AS C, SUM(N) AS S FROM tx_in GROUP BY K;";
    let task = start(&cluster, query, "tx_agg");
    let stats = task.stats.clone();
    wait_until("the input is consumed", || {
        stats.consumed.load(Ordering::Relaxed) == RECORDS
    });
    task.stop();
    // A new attempt restores the state its last transaction committed, and goes on from there.
    cluster
        .produce_and_wait("tx_in", &input(RECORDS..2 * RECORDS))
        .expect("produce");
    let task = start(&cluster, query, "tx_agg");
    let stats = task.stats.clone();
    wait_until("the rest is consumed", || {
        stats.consumed.load(Ordering::Relaxed) == RECORDS
    });
    task.stop();
    assert_eq!(
        stats.restarts.load(Ordering::Relaxed),
        0,
        "{:?}",
        stats.failure()
    );
    let mut latest: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in cluster
        .read_records("TX_COUNTS", Duration::from_secs(30))
        .expect("read")
    {
        let v: serde_json::Value = serde_json::from_slice(&r.value.expect("value")).expect("json");
        let key = String::from_utf8(r.key.expect("key")).expect("utf-8");
        latest.insert(
            key,
            (v["C"].as_u64().expect("C"), v["S"].as_u64().expect("S")),
        );
    }
    assert_eq!(latest.len() as u64, KEYS);
    for k in 0..KEYS {
        let ns = (0..2 * RECORDS).filter(|n| n % KEYS == k);
        let expected = (ns.clone().count() as u64, ns.sum::<u64>());
        assert_eq!(latest[&format!("k{k}")], expected, "key k{k}");
    }
}
