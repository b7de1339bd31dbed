//! The servers sharing a service id, and which shards of each query's state they hold: every server
//! announces itself (its advertised URL and its shards) on the `_eddy-<service>_hosts` topic every
//! second and reads the others' announcements from the end of the topic on (a live server is heard
//! within a second; history is of no use), so a pull query can ask the servers that hold the rest of a
//! table's state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use eddy_common::Error;
use eddy_runtime::{Record, TopicAdmin};

use crate::client_settings::Role;
use crate::cluster::{InternalTopic, KafkaCluster, kafka_err, now_millis};

/// How often a server announces itself.
const EVERY: Duration = Duration::from_secs(1);
/// A server not heard from for this long is gone.
const ALIVE_MS: i64 = 10_000;

/// Shard ids held, by query id.
pub type Holdings = BTreeMap<String, Vec<i32>>;

/// A server, as it last announced itself.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its advertised URL.
    pub url: String,
    /// When it announced itself (ms since the epoch, its clock).
    pub at: i64,
    /// The shards of query state it holds.
    pub holdings: Holdings,
}

impl Host {
    /// Whether it was heard from lately.
    pub fn is_alive(&self) -> bool {
        now_millis() - self.at <= ALIVE_MS
    }
}

/// This server's view of its peers.
pub struct Peers {
    me: String,
    /// What this server last announced.
    mine: Mutex<Option<Host>>,
    hosts: Mutex<HashMap<String, Host>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Peers({})", self.me)
    }
}

impl Peers {
    /// Starts announcing this server (reachable at `url`, holding what `holdings` says) and reading
    /// the others' announcements.
    pub fn start(
        cluster: Arc<KafkaCluster>,
        service_id: &str,
        url: String,
        holdings: impl Fn() -> Holdings + Send + 'static,
    ) -> Result<Arc<Peers>, Error> {
        let topic = format!("_eddy-{service_id}_hosts");
        if cluster.partitions(&topic)?.is_none() {
            cluster.create_internal_topic(&topic, InternalTopic::Server, 1, &[])?;
        }
        let me = format!("{url}#{}", std::process::id());
        let consumer: BaseConsumer = cluster
            .client_config(Role::Consumer)
            .set("group.id", format!("{topic}-{me}"))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_err)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::End)
            .map_err(kafka_err)?;
        consumer.assign(&tpl).map_err(kafka_err)?;
        let peers = Arc::new(Peers {
            me: me.clone(),
            mine: Mutex::new(None),
            hosts: Mutex::new(HashMap::new()),
            stop: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
        });
        let seen = peers.clone();
        let thread = std::thread::Builder::new()
            .name("peers".into())
            .spawn(move || {
                while !seen.stop.load(Ordering::SeqCst) {
                    let host = Host {
                        url: url.clone(),
                        at: now_millis(),
                        holdings: holdings(),
                    };
                    let announcement =
                        json!({"url": host.url, "at": host.at, "holdings": host.holdings});
                    *seen.mine.lock().unwrap_or_else(|p| p.into_inner()) = Some(host);
                    let record = Record {
                        key: Some(me.clone().into_bytes()),
                        value: Some(announcement.to_string().into_bytes()),
                        timestamp: now_millis(),
                        partition: 0,
                        offset: 0,
                        headers: Vec::new(),
                    };
                    if let Err(e) = cluster.send(&topic, &[record]) {
                        tracing::debug!("announcing this server failed: {e}");
                    }
                    let until = std::time::Instant::now() + EVERY;
                    while std::time::Instant::now() < until {
                        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                            seen.heard(m.key(), m.payload());
                        }
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the peers thread: {e}")))?;
        *peers.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(peers)
    }

    fn heard(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let (Some(key), Some(value)) = (key, value) else {
            return;
        };
        let key = String::from_utf8_lossy(key).into_owned();
        if key == self.me {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(value) else {
            return;
        };
        let holdings: Holdings = serde_json::from_value(v["holdings"].clone()).unwrap_or_default();
        let host = Host {
            url: v["url"].as_str().unwrap_or_default().to_string(),
            at: v["at"].as_i64().unwrap_or_default(),
            holdings,
        };
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, host);
    }

    /// The live servers holding shards of `query` that `missing` lists, with the shards each holds;
    /// and the shards no live server holds.
    pub fn holders(&self, query: &str, missing: &[i32]) -> (Vec<(String, Vec<i32>)>, Vec<i32>) {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let mut left: Vec<i32> = missing.to_vec();
        let mut found = Vec::new();
        for host in hosts.values().filter(|h| h.is_alive()) {
            let Some(held) = host.holdings.get(query) else {
                continue;
            };
            let theirs: Vec<i32> = left.iter().copied().filter(|s| held.contains(s)).collect();
            if !theirs.is_empty() {
                left.retain(|s| !theirs.contains(s));
                found.push((host.url.clone(), theirs));
            }
        }
        (found, left)
    }

    /// Every server of the service id this one has heard of, itself first (once it has announced
    /// itself), with what each last announced.
    pub fn hosts(&self) -> Vec<Host> {
        let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let mut others: Vec<Host> = hosts.values().cloned().collect();
        others.sort_by(|a, b| a.url.cmp(&b.url));
        mine.into_iter().chain(others).collect()
    }

    /// Stops announcing.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
