//! Keeps a [`TableStore`] current: a thread reads the table's topic from its start and applies every
//! record, for as long as the feed lives. A pull query first waits until the store holds everything
//! the topic held when it asked ([`TableFeed::caught_up`]), so it sees what a read of the topic would
//! have shown it, then reads the store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::{Result, external_err};
use eddy_runtime::registry::SchemaRegistry;
use eddy_runtime::table_store::TableStore;
use eddy_runtime::{Record, TopicAdmin};
use eddy_sql::catalog::Source;

use crate::cluster::{KafkaCluster, kafka_err};

/// How long a poll of the table's topic waits for records.
const POLL: Duration = Duration::from_millis(100);
/// Most records applied at once.
const BATCH: usize = 5_000;
/// How long a request for the topic's ends may take.
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(10);

/// A table's store and the thread that keeps it current.
pub struct TableFeed {
    store: Arc<Mutex<TableStore>>,
    /// Next offset to apply, per partition.
    positions: Arc<Mutex<BTreeMap<i32, i64>>>,
    /// Asks the topic's ends.
    ends: BaseConsumer,
    topic: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TableFeed {
    /// Starts reading `source`'s topic (every partition, from its start) into a new store.
    pub fn start(
        cluster: &KafkaCluster,
        source: &Arc<Source>,
        registry: &Arc<dyn SchemaRegistry>,
    ) -> Result<TableFeed> {
        let store = Arc::new(Mutex::new(TableStore::new(source, registry)?));
        let topic = source.topic.clone();
        let partitions = cluster
            .partitions(&topic)?
            .ok_or_else(|| external_err!("Kafka: the table's topic {topic} does not exist"))?;
        let config = cluster
            .reader_config()
            .set("group.id", format!("{topic}-store"))
            .set("enable.auto.commit", "false")
            .clone();
        let reader: BaseConsumer = config.create().map_err(kafka_err)?;
        let ends: BaseConsumer = config.create().map_err(kafka_err)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(kafka_err)?;
        }
        reader.assign(&tpl).map_err(kafka_err)?;
        let positions = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (store, positions, stop) = (store.clone(), positions.clone(), stop.clone());
            let name = format!("store-{}", source.name);
            std::thread::Builder::new()
                .name(name)
                .spawn(move || feed(&reader, &store, &positions, &stop))
                .map_err(|e| external_err!("cannot start the table's store: {e}"))?
        };
        Ok(TableFeed {
            store,
            positions,
            ends,
            topic,
            stop,
            thread: Some(thread),
        })
    }

    /// The table the store holds.
    pub fn source(&self) -> Arc<Source> {
        lock(&self.store).source().clone()
    }

    /// Waits until the store holds every record the topic held when called; fails after `timeout`.
    pub fn caught_up(&self, timeout: Duration) -> Result<MutexGuard<'_, TableStore>> {
        let metadata = self
            .ends
            .fetch_metadata(Some(&self.topic), WATERMARKS_TIMEOUT)
            .map_err(kafka_err)?;
        let count = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        // Per partition with records: the offset past its last one.
        let mut highs = Vec::with_capacity(count);
        for p in 0..count as i32 {
            let (low, high) = self
                .ends
                .fetch_watermarks(&self.topic, p, WATERMARKS_TIMEOUT)
                .map_err(kafka_err)?;
            if high > low {
                highs.push((p, high));
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let behind = {
                let at = lock(&self.positions);
                highs
                    .iter()
                    .any(|(p, high)| at.get(p).is_none_or(|o| o < high))
            };
            if !behind {
                return Ok(lock(&self.store));
            }
            if Instant::now() > deadline {
                return Err(external_err!(
                    "Kafka: the store of {} did not catch up with its topic within {} s",
                    self.topic,
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for TableFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The feed's thread: applies what the reader reads until told to stop.
fn feed(
    reader: &BaseConsumer,
    store: &Mutex<TableStore>,
    positions: &Mutex<BTreeMap<i32, i64>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut records = Vec::new();
        let deadline = Instant::now() + POLL;
        while records.len() < BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            match reader.poll(left) {
                Some(Ok(m)) => records.push(Record {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    timestamp: m.timestamp().to_millis().unwrap_or(0),
                    partition: m.partition(),
                    offset: m.offset(),
                    headers: Vec::new(),
                }),
                Some(Err(e)) => {
                    tracing::warn!("reading a table's topic into its store: {e}");
                    break;
                }
                None => break,
            }
        }
        if !records.is_empty()
            && let Err(e) = lock(store).apply(records)
        {
            tracing::warn!("a table's store left a batch out: {e}");
        }
        // Where the reader stands, past transaction markers too.
        if let Ok(at) = reader.position() {
            let mut positions = lock(positions);
            for e in at.elements() {
                if let Offset::Offset(o) = e.offset() {
                    positions.insert(e.partition(), o);
                }
            }
        }
    }
}
