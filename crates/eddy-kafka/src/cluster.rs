//! A connection to a Kafka cluster: admin operations and a shared producer, implementing the runtime's
//! [`TopicAdmin`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use eddy_common::{Result, external_err};
use eddy_runtime::{Record, TopicAdmin, TopicInfo};

use crate::acks::{Acks, Batch, Producer};
use crate::client_settings::{ClientSettings, Role};
use crate::delivery_error::DeliveryError;
use crate::message_view::MessageView;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a created topic may take to appear in the metadata.
const TOPIC_VISIBLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Admin client and producer for one cluster.
pub struct KafkaCluster {
    config: ClusterConfig,
    admin: AdminClient<DefaultClientContext>,
    producer: Producer,
    /// Under [`Transactions::Auto`], what the broker answered.
    transactions_supported: Mutex<Option<bool>>,
    instance: u64,
}

impl std::fmt::Debug for KafkaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCluster")
            .field("bootstrap", &self.config.bootstrap)
            .finish()
    }
}

/// How Eddy reaches a cluster and creates topics in it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `host:port[,host:port]`.
    pub bootstrap: String,
    pub transactions: Transactions,
    /// The users' client settings (security, timeouts, ...).
    pub clients: ClientSettings,
    /// Replication factor of the server's own topics (command log, processing log, peers):
    /// ksqlDB's `ksql.internal.topic.replicas`.
    pub internal_replicas: i16,
    /// Replication factor of queries' internal topics (changelogs, repartition topics, leases,
    /// checkpoints): Kafka Streams' `replication.factor`.
    pub state_replicas: i16,
}

impl ClusterConfig {
    /// The cluster at `bootstrap` with the default settings.
    pub fn new(bootstrap: &str) -> Self {
        ClusterConfig {
            bootstrap: bootstrap.to_string(),
            transactions: Transactions::Auto,
            clients: ClientSettings::default(),
            internal_replicas: 1,
            state_replicas: 1,
        }
    }
}

/// Which of Eddy's topics a new topic is: its replication factor follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalTopic {
    /// The server's own (command log, processing log, peers).
    Server,
    /// A query's (changelog, repartition topic, lease, checkpoints).
    Query,
}

/// How long a consumer whose records someone waits for (a query's input, a push query, PRINT) lets
/// the broker hold a fetch that finds nothing. A broker that answers only as the wait runs out (the
/// local one does; Kafka answers as soon as records arrive) holds a record up to that long, and an
/// idle consumer asks this often: latency first, `fetch.max.wait.ms` trades it back.
const READER_FETCH_WAIT_MS: &str = "5";

/// How long a consumer whose fetched records fill its queue waits before it fetches again.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Eddy's settings for a new client of kind `role` (`extra`: the client's own defaults), then the
/// users' (which may change Eddy's defaults: timeouts, batching, ...; the settings Eddy must make
/// itself are refused in `client_settings`, and each client adds its own after these).
fn client_config(config: &ClusterConfig, role: Role, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap)
        .set("log_level", "3");
    match role {
        // A record goes out within a millisecond: batches still form while a request is in flight.
        Role::Producer => {
            c.set("linger.ms", "1")
                .set("acks", "all")
                .set("enable.idempotence", "true");
        }
        // A restarted server rejoins its groups; a short session lets the old member expire. A
        // consumer whose queue of fetched records is full fetches again as soon as there is room:
        // librdkafka's default backoff of a second left a query that drains its queue faster idle
        // for the rest of that second (a query ran at a seventh of its rate, a restore took seconds
        // per hundred thousand records).
        Role::Consumer => {
            c.set("session.timeout.ms", "10000")
                .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        }
        Role::Admin | Role::All => {}
    }
    for (k, v) in extra {
        c.set(*k, *v);
    }
    config.clients.apply(&mut c, role);
    c
}

pub(crate) fn kafka_err(e: KafkaError) -> eddy_common::Error {
    external_err!("Kafka: {e}")
}

impl KafkaCluster {
    /// Creates a topic with topic-level settings (e.g. `cleanup.policy=compact`); an existing topic is
    /// left as it is.
    pub fn create_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        replicas: i16,
        config: &[(&str, &str)],
    ) -> Result<()> {
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas as i32));
        for (k, v) in config {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        let results = block_on(self.admin.create_topics([&new], &opts)).map_err(kafka_err)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(external_err!("Kafka: cannot create topic {name}: {code}"));
                }
            }
        }
        // Wait until the new topic's metadata is visible, so consumers and producers find it. A
        // loaded broker may take seconds to elect the new partitions' leaders.
        let deadline = std::time::Instant::now() + TOPIC_VISIBLE_TIMEOUT;
        loop {
            if self.partitions(topic)?.is_some() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(external_err!(
                    "Kafka: topic {topic} was created but does not appear in the metadata after {} s",
                    TOPIC_VISIBLE_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Connects to the cluster at `bootstrap` (`host:port[,host:port]`); exactly-once output uses
    /// transactions when the broker has them.
    pub fn connect(bootstrap: &str) -> Result<Self> {
        KafkaCluster::open(ClusterConfig::new(bootstrap))
    }

    /// [`KafkaCluster::connect`], saying whether exactly-once output uses transactions.
    pub fn connect_with(bootstrap: &str, transactions: Transactions) -> Result<Self> {
        KafkaCluster::open(ClusterConfig {
            transactions,
            ..ClusterConfig::new(bootstrap)
        })
    }

    /// Connects to a cluster as `config` says.
    pub fn open(config: ClusterConfig) -> Result<Self> {
        let admin = client_config(&config, Role::Admin, &[])
            .create()
            .map_err(kafka_err)?;
        let producer = client_config(&config, Role::Producer, &[])
            .create_with_context(Acks)
            .map_err(kafka_err)?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Ok(KafkaCluster {
            config,
            admin,
            producer,
            transactions_supported: Mutex::new(None),
            instance: (u64::from(std::process::id()) << 32) ^ (started as u64),
        })
    }

    /// The bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.config.bootstrap
    }

    /// The settings of a new client of kind `role`: Eddy's defaults, then the users' settings.
    pub fn client_config(&self, role: Role) -> ClientConfig {
        client_config(&self.config, role, &[])
    }

    /// The settings of a consumer whose records someone is waiting for (a query's input, a push
    /// query, PRINT): a short fetch wait, unless the users' settings say otherwise.
    pub fn reader_config(&self) -> ClientConfig {
        client_config(
            &self.config,
            Role::Consumer,
            &[("fetch.wait.max.ms", READER_FETCH_WAIT_MS)],
        )
    }

    /// Creates one of Eddy's own topics (an existing one is left as it is), replicated as the
    /// configuration says for its kind.
    pub fn create_internal_topic(
        &self,
        topic: &str,
        kind: InternalTopic,
        partitions: i32,
        config: &[(&str, &str)],
    ) -> Result<()> {
        let replicas = match kind {
            InternalTopic::Server => self.config.internal_replicas,
            InternalTopic::Query => self.config.state_replicas,
        };
        self.create_topic_with(topic, partitions, replicas, config)
    }

    /// The shared producer.
    pub(crate) fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Waits until the cluster answers a metadata request.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.admin
            .inner()
            .fetch_metadata(None, Timeout::After(timeout))
            .map(|_| ())
            .map_err(kafka_err)
    }

    /// Reads every partition of `topic` (or only `partition`) from its first to its last record (as of
    /// the call), handing each message to `each` (in order within a partition); gives up after
    /// `timeout`, or when `stop` is set.
    pub fn read_to_end(
        &self,
        topic: &str,
        partition: Option<i32>,
        timeout: Duration,
        stop: Option<&AtomicBool>,
        each: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<()> {
        let partitions = self.partitions(topic)?.unwrap_or(0);
        let from: BTreeMap<i32, i64> = (0..partitions)
            .filter(|p| partition.is_none_or(|only| only == *p))
            .map(|p| (p, 0))
            .collect();
        self.read_from(topic, &from, timeout, stop, each)
    }

    /// As [`KafkaCluster::read_to_end`], for the partitions in `from` only, each from the offset
    /// `from` gives (or its first record, if that is later).
    pub fn read_from(
        &self,
        topic: &str,
        from: &BTreeMap<i32, i64>,
        timeout: Duration,
        stop: Option<&AtomicBool>,
        mut each: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<()> {
        let reader: BaseConsumer = self
            .client_config(Role::Consumer)
            .set("group.id", format!("{topic}-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_err)?;
        let mut tpl = TopicPartitionList::new();
        // Per partition: the next offset to read and the end to read up to.
        let mut left = std::collections::HashMap::new();
        for (&p, &start) in from {
            let (low, high) = reader
                .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                .map_err(kafka_err)?;
            let start = start.max(low);
            if high > start {
                tpl.add_partition_offset(topic, p, Offset::Offset(start))
                    .map_err(kafka_err)?;
                left.insert(p, high);
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        reader.assign(&tpl).map_err(kafka_err)?;
        let deadline = Instant::now() + timeout;
        while !left.is_empty() {
            if Instant::now() > deadline || stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return Err(external_err!(
                    "Kafka: reading {topic} to its end stopped before the end"
                ));
            }
            match reader.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    if left
                        .get(&m.partition())
                        .is_some_and(|&high| m.offset() < high)
                    {
                        each(&m);
                    }
                    if left
                        .get(&m.partition())
                        .is_some_and(|&high| m.offset() + 1 >= high)
                    {
                        left.remove(&m.partition());
                    }
                }
                Some(Err(e)) => return Err(kafka_err(e)),
                // The last records of a partition may be transaction markers, which are never
                // handed out: where the reader stands says whether it is past them.
                None => {
                    if let Ok(at) = reader.position() {
                        for e in at.elements() {
                            if let Offset::Offset(o) = e.offset()
                                && left.get(&e.partition()).is_some_and(|&high| o >= high)
                            {
                                left.remove(&e.partition());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every record of `topic` as of the call (all partitions, in order within each).
    pub fn read_records(&self, topic: &str, timeout: Duration) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        self.read_to_end(topic, None, timeout, None, |m| records.extend(record_of(m)))?;
        Ok(records)
    }

    /// The end offset (next offset to be written) of each partition of `topic`.
    pub fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let partitions = self.partitions(topic)?.unwrap_or(0);
        (0..partitions)
            .map(|p| {
                self.admin
                    .inner()
                    .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                    .map(|(_, high)| high)
                    .map_err(kafka_err)
            })
            .collect()
    }

    /// Produces records and waits until each one is acknowledged.
    pub fn produce_and_wait(&self, topic: &str, records: &[Record]) -> Result<()> {
        Ok(self.send(topic, records)?.wait()?)
    }

    /// Hands records to the producer without waiting; [`Deliveries::wait`] waits for the broker's
    /// acknowledgements.
    pub fn send(
        &self,
        topic: &str,
        records: &[Record],
    ) -> std::result::Result<Deliveries, DeliveryError> {
        self.send_with_origins(topic, records, &[])
    }

    /// [`KafkaCluster::send`], the `i`-th record with `origins[i]` as its origin header (see
    /// `origin`), when there are origins.
    pub fn send_with_origins(
        &self,
        topic: &str,
        records: &[Record],
        origins: &[Vec<u8>],
    ) -> std::result::Result<Deliveries, DeliveryError> {
        send_on(&self.producer, topic, records, origins)
    }

    /// How exactly-once output is made on this cluster: through Kafka transactions, or Eddy's own
    /// sink (see `exactly_once`). Under [`Transactions::Auto`] the broker is asked once (`ask`), the
    /// first time an exactly-once query starts.
    pub(crate) fn uses_transactions(&self, ask: impl FnOnce() -> Result<bool>) -> Result<bool> {
        match self.config.transactions {
            Transactions::On => Ok(true),
            Transactions::Off => Ok(false),
            Transactions::Auto => {
                let mut known = self
                    .transactions_supported
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some(known) = *known {
                    return Ok(known);
                }
                let supported = ask()?;
                *known = Some(supported);
                Ok(supported)
            }
        }
    }

    /// A number telling this process's clients apart from those of other servers (and of this
    /// server before a restart).
    pub fn instance(&self) -> u64 {
        self.instance
    }
}

/// Hands records to `producer` without waiting, the `i`-th with `origins[i]` as its origin header
/// when there are origins; a full queue is waited out.
pub(crate) fn send_on(
    producer: &Producer,
    topic: &str,
    records: &[Record],
    origins: &[Vec<u8>],
) -> std::result::Result<Deliveries, DeliveryError> {
    let batch = Batch::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec: BaseRecord<'_, [u8], [u8], Arc<Batch>> =
            BaseRecord::with_opaque_to(topic, batch.clone()).timestamp(r.timestamp);
        let origin = origins.get(i);
        if origin.is_some() || !r.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 1);
            for (key, value) in &r.headers {
                headers = headers.insert(Header {
                    key: key.as_str(),
                    value: value.as_deref(),
                });
            }
            if let Some(origin) = origin {
                headers = headers.insert(Header {
                    key: crate::origin::HEADER,
                    value: Some(origin.as_slice()),
                });
            }
            rec = rec.headers(headers);
        }
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if r.partition >= 0 {
            rec = rec.partition(r.partition);
        }
        batch.handing();
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer's thread reports deliveries meanwhile, which makes room.
                    rec = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    batch.withdrawn();
                    return Err(DeliveryError::of(&e));
                }
            }
        }
    }
    Ok(Deliveries(batch))
}

/// Whether exactly-once output goes through Kafka transactions (`eddy.transactions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transactions {
    /// When the broker has them (asked once); otherwise Eddy's own exactly-once sink.
    #[default]
    Auto,
    /// Always: an exactly-once query fails when the broker refuses them.
    On,
    /// Never: Eddy's own exactly-once sink, also on brokers that have transactions.
    Off,
}

impl std::str::FromStr for Transactions {
    type Err = eddy_common::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Transactions::Auto),
            "on" | "true" => Ok(Transactions::On),
            "off" | "false" => Ok(Transactions::Off),
            other => Err(eddy_common::Error::Plan(format!(
                "eddy.transactions must be auto, on or off, not '{other}'"
            ))),
        }
    }
}

/// Records handed to the producer, not yet acknowledged.
pub struct Deliveries(Arc<Batch>);

impl Deliveries {
    /// Waits until the broker acknowledged every record; the first failure is the error.
    pub fn wait(self) -> std::result::Result<(), DeliveryError> {
        self.wait_ends().map(|_| ())
    }

    /// [`Deliveries::wait`], telling where the records went: per partition, the offset after the
    /// last of them. After a failure it still waits for every other record, so that none of them
    /// is in flight any more when it returns.
    pub fn wait_ends(self) -> std::result::Result<BTreeMap<i32, i64>, DeliveryError> {
        self.0.wait()
    }
}

impl TopicAdmin for KafkaCluster {
    fn partitions(&self, topic: &str) -> Result<Option<i32>> {
        // Metadata of all topics: asking for one by name may make a broker create it.
        Ok(self
            .list_topics()?
            .into_iter()
            .find(|t| t.name == topic && t.partitions > 0)
            .map(|t| t.partitions))
    }

    fn create_topic(&self, topic: &str, partitions: i32, replicas: i16) -> Result<()> {
        self.create_topic_with(topic, partitions, replicas, &[])
    }

    fn delete_topic(&self, topic: &str) -> Result<()> {
        let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        let results = block_on(self.admin.delete_topics(&[topic], &opts)).map_err(kafka_err)?;
        for r in results {
            if let Err((name, code)) = r
                && code != RDKafkaErrorCode::UnknownTopicOrPartition
            {
                return Err(external_err!("Kafka: cannot delete topic {name}: {code}"));
            }
        }
        Ok(())
    }

    fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let md = self
            .admin
            .inner()
            .fetch_metadata(None, Timeout::After(METADATA_TIMEOUT))
            .map_err(kafka_err)?;
        let mut topics: Vec<TopicInfo> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| TopicInfo {
                name: t.name().to_string(),
                partitions: t.partitions().len() as i32,
                replicas: t
                    .partitions()
                    .first()
                    .map(|p| p.replicas().len() as i16)
                    .unwrap_or(1),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    fn produce(&self, topic: &str, records: Vec<Record>) -> Result<()> {
        self.produce_and_wait(topic, &records)
    }
}

/// Wall-clock time, epoch milliseconds (the timestamp of records Eddy writes for itself).
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A copy of a consumed message as a record (none for a message rdkafka holds no pointer to).
pub(crate) fn record_of(m: &BorrowedMessage<'_>) -> Option<Record> {
    MessageView::of(m).map(|view| Record::copy_of(&view))
}
