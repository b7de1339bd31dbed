//! The MQTT source connector at work: a thread subscribing to the connector's MQTT topics with a
//! persistent session, writing each batch of messages to the Kafka topic (keyed by a level of their
//! MQTT topic, placed as Kafka's default partitioner places keys) and acknowledging them to the MQTT
//! broker only once Kafka has them. A message the broker accepted is therefore in Kafka at least
//! once, across a crash of the server: the broker keeps what was not acknowledged, and what was
//! published meanwhile, for the session's return. Of the servers of a service id, the one holding
//! the connector's lease (the only partition of its lease topic, given by a consumer group) runs
//! it; when that server goes, another takes the lease and the session over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

use eddy_common::{Result, exec_err};
use eddy_runtime::connector::MqttSource;
use eddy_runtime::partitioner::partition_for;
use eddy_runtime::{Record, TopicAdmin};

use crate::cluster::{InternalTopic, KafkaCluster, now_millis};
use crate::query_io::{query_consumer, subscribed};

/// Most messages written to Kafka as one batch.
const MAX_BATCH: usize = 2_000;
/// How long a batch waits for more messages once it has one.
const LINGER: Duration = Duration::from_millis(5);
/// Requests (acknowledgements) the client holds for the connection.
const QUEUE: usize = 10_000;

/// What a running connector has done.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    /// Messages written to Kafka and acknowledged.
    pub messages: AtomicU64,
    /// Messages without a key at the connector's key level (written without a key).
    pub unkeyed: AtomicU64,
    /// Connection failures (each followed by a retry).
    pub reconnects: AtomicU64,
    /// Whether the connection is up.
    pub connected: AtomicBool,
}

/// A running MQTT source connector; stops when dropped.
pub struct MqttSourceTask {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<ConnectorStats>,
}

impl Drop for MqttSourceTask {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts connector `name` (MQTT client id `client_id`) writing into `cluster`, on this server
/// while it holds the lease of group `lease_group`.
pub fn start_mqtt_source(
    name: &str,
    config: MqttSource,
    client_id: String,
    cluster: Arc<KafkaCluster>,
    lease_group: &str,
) -> Result<MqttSourceTask> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ConnectorStats::default());
    let partitions = cluster
        .partitions(&config.kafka_topic)?
        .ok_or_else(|| exec_err!("topic '{}' does not exist", config.kafka_topic))?;
    let lease_topic = format!("{lease_group}-lease");
    if cluster.partitions(&lease_topic)?.is_none() {
        cluster.create_internal_topic(&lease_topic, InternalTopic::Server, 1, &[])?;
    }
    let lease = subscribed(
        &query_consumer(&cluster, lease_group, "latest"),
        &lease_topic,
    )
    .map_err(|e| exec_err!("connector {name}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("connector-{name}-io"))
        .enable_all()
        .build()
        .map_err(|e| exec_err!("cannot start connector {name}: {e}"))?;
    let (stopping, counting) = (stop.clone(), stats.clone());
    let label = name.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("connector-{name}"))
        .spawn(move || {
            // The session runs while this server holds the lease; polling keeps the membership.
            let mut session: Option<(Arc<AtomicBool>, tokio::task::JoinHandle<()>)> = None;
            while !stopping.load(Ordering::SeqCst) {
                let _ = lease.poll(Duration::from_millis(200));
                let held = lease.assignment().is_ok_and(|a| a.count() > 0);
                if held && session.is_none() {
                    tracing::info!(connector = %label, "took the connector's lease: this server runs it");
                    let own_stop = Arc::new(AtomicBool::new(false));
                    let source = Source {
                        config: config.clone(),
                        cluster: cluster.clone(),
                        partitions,
                        stop: own_stop.clone(),
                        stats: counting.clone(),
                        name: label.clone(),
                    };
                    session = Some((own_stop, runtime.spawn(source.run(client_id.clone()))));
                } else if !held && let Some((own_stop, running)) = session.take() {
                    tracing::info!(connector = %label, "lost the connector's lease: another server runs it");
                    own_stop.store(true, Ordering::SeqCst);
                    let _ = runtime.block_on(running);
                    counting.connected.store(false, Ordering::SeqCst);
                }
            }
            if let Some((own_stop, running)) = session {
                own_stop.store(true, Ordering::SeqCst);
                let _ = runtime.block_on(running);
            }
        })
        .map_err(|e| exec_err!("cannot start connector {name}: {e}"))?;
    Ok(MqttSourceTask {
        stop,
        thread: Some(thread),
        stats,
    })
}

struct Source {
    config: MqttSource,
    cluster: Arc<KafkaCluster>,
    partitions: i32,
    stop: Arc<AtomicBool>,
    stats: Arc<ConnectorStats>,
    name: String,
}

impl Source {
    async fn run(self, client_id: String) {
        let mut options = MqttOptions::new(client_id, self.config.host.clone(), self.config.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_manual_acks(true)
            .set_clean_session(self.config.clean_session);
        let (client, mut eventloop) = AsyncClient::new(options, QUEUE);
        let qos = if self.config.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        // The connection's messages, through a channel the batching can wait on with a timeout. It
        // is unbounded so that the connection is always polled — the acknowledgements go out through
        // it — and holds at most what the MQTT broker sends unacknowledged (its in-flight window).
        let (events, mut incoming) = mpsc::unbounded_channel::<Publish>();
        let (stats, stop, name) = (self.stats.clone(), self.stop.clone(), self.name.clone());
        let subscriber = client.clone();
        let topics = self.config.topics.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        stats.connected.store(true, Ordering::SeqCst);
                        tracing::info!(connector = %name, "connected to the MQTT broker");
                        for t in &topics {
                            if let Err(e) = subscriber.subscribe(t.as_str(), qos).await {
                                tracing::error!(connector = %name, "cannot subscribe to {t}: {e}");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if events.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        stats.connected.store(false, Ordering::SeqCst);
                        stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(connector = %name, "MQTT connection: {e}; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let mut batch: Vec<Publish> = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            if batch.is_empty() {
                match tokio::time::timeout(Duration::from_millis(200), incoming.recv()).await {
                    Ok(Some(p)) => batch.push(p),
                    Ok(None) => break,
                    Err(_) => continue,
                }
            }
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout(LINGER, incoming.recv()).await {
                    Ok(Some(p)) => batch.push(p),
                    _ => break,
                }
            }
            if self.write(&batch).await {
                for p in batch.drain(..) {
                    if let Err(e) = client.ack(&p).await {
                        tracing::warn!(connector = %self.name, "acknowledging a message: {e}");
                    }
                }
            } else {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let _ = client.disconnect().await;
    }

    /// Writes a batch to Kafka and waits until it is there; false (logged) if it could not be.
    async fn write(&self, batch: &[Publish]) -> bool {
        let now = now_millis();
        let records: Vec<Record> = batch
            .iter()
            .map(|p| {
                let key = self.config.key(&p.topic).map(|k| k.as_bytes().to_vec());
                if key.is_none() {
                    self.stats.unkeyed.fetch_add(1, Ordering::Relaxed);
                }
                Record {
                    partition: key
                        .as_deref()
                        .map_or(-1, |k| partition_for(k, self.partitions)),
                    key,
                    value: Some(p.payload.to_vec()),
                    timestamp: now,
                    offset: -1,
                    headers: vec![("mqtt.topic".to_string(), Some(p.topic.as_bytes().to_vec()))],
                }
            })
            .collect();
        let (cluster, topic) = (self.cluster.clone(), self.config.kafka_topic.clone());
        let written =
            tokio::task::spawn_blocking(move || cluster.produce_and_wait(&topic, &records)).await;
        match written {
            Ok(Ok(())) => {
                self.stats
                    .messages
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(connector = %self.name, "writing {} messages to Kafka: {e}; retrying", batch.len());
                false
            }
            Err(e) => {
                tracing::error!(connector = %self.name, "writing to Kafka: {e}");
                false
            }
        }
    }
}
