//! The server's shared state: the engine, the Kafka cluster, the command log and the running query
//! tasks; executing `/ksql` scripts and replaying the command log at start.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value, json};

use eddy_common::Error;
use eddy_common::rest::ErrorMessage;
use eddy_kafka::{
    Backoff, CommandLog, KafkaCluster, Peers, ProcessingLog, QueryTask, TableFeed, TaskConfig,
    changelog_topic, exactly_once_guarantee, is_internal_topic, max_task_idle, start_persistent,
};
use eddy_kafka::{MqttSourceTask, SharedReaders, start_mqtt_source};
use eddy_runtime::engine::Properties;
use eddy_runtime::functions::PluginDir;
use eddy_runtime::model_refs;
use eddy_runtime::registry::{RegisteredSchema, SchemaKind, SchemaRegistry};
use eddy_runtime::{Engine, Outcome, TopicAdmin, TopicInfo};
use eddy_sql::catalog::Source;
use eddy_sql::statement::{ExplainTarget, ShowKind, SourceKind, Statement};
use eddy_sql::variables::{SUBSTITUTION_PROPERTY, Variables};

use crate::access::Access;
use crate::assertions;
use crate::command_status::{CommandStatus, command_status};
use crate::connector_entities;
use crate::entity;
use crate::function_entities;
use crate::model_entities;
use crate::peer_client::PeerClient;
use crate::query_description::{self, QueryDescription};
pub use crate::query_view::QueryView;
use crate::settings::check_request;
use crate::variable_list::variable_list;

/// How the server runs persistent queries that do not say otherwise.
#[derive(Debug, Clone)]
pub struct QueryDefaults {
    /// The properties of the server's configuration that statements may set: what statements run
    /// with unless they set them otherwise.
    pub properties: Properties,
    /// Queries without a `processing.guarantee` of their own are exactly-once (the server's
    /// `processing.guarantee`).
    pub exactly_once: bool,
    /// Processing-log entries of skipped records hold the record's bytes
    /// (`ksql.logging.processing.rows.include`).
    pub log_rows: bool,
    /// Queries keep per-record figures for `/metrics` (`eddy.metrics.per.record`).
    pub metrics: bool,
    /// Where the model catalog is written out for model plugins (none: no catalog), and the
    /// directory of models registered at the start (`<name>/<version>/` folders).
    pub models: Option<ModelDirs>,
}

/// The model catalog's directories.
#[derive(Debug, Clone)]
pub struct ModelDirs {
    pub catalog: std::path::PathBuf,
    pub preload: Option<std::path::PathBuf>,
}

/// The plugin setting naming the model directory.
pub const MODEL_DIR_PROPERTY: &str = "ksql.functions._global_.model_dir";

impl Default for QueryDefaults {
    fn default() -> Self {
        QueryDefaults {
            properties: Properties::new(),
            exactly_once: false,
            log_rows: false,
            metrics: true,
            models: None,
        }
    }
}

/// Everything the handlers share.
pub struct AppState {
    engine: Mutex<Engine>,
    pub cluster: Arc<KafkaCluster>,
    log: CommandLog,
    /// Where queries log the records they skip and their failures.
    pub processing_log: Arc<ProcessingLog>,
    tasks: Mutex<HashMap<String, QueryTask>>,
    /// Shards of the state of each running persistent query (its changelog's partitions), asked
    /// once instead of per pull query; forgotten when a query's task starts or stops.
    shard_counts: Mutex<HashMap<String, i32>>,
    /// The source connectors running on this server, by name.
    connectors: Mutex<HashMap<String, MqttSourceTask>>,
    /// Transient push queries, by id, for `/close-query`.
    pub push: Mutex<HashMap<String, QueryTask>>,
    /// The readers push queries of one topic from its latest records share.
    pub push_readers: SharedReaders,
    /// Most push queries running at once; more are refused.
    pub max_push_queries: std::sync::atomic::AtomicUsize,
    /// Whether queries without a `processing.guarantee` of their own are exactly-once (the
    /// server's `processing.guarantee`).
    exactly_once: bool,
    /// Whether queries keep per-record figures for `/metrics`.
    per_record_metrics: bool,
    /// What statements run with unless they set it otherwise.
    server_properties: Properties,
    pub service_id: String,
    /// The bootstrap address of the broker the server started itself, if it did.
    pub local_broker: Option<String>,
    seq: AtomicI64,
    /// The command log's offset after the commands this server has run.
    log_next: AtomicI64,
    transient_seq: AtomicU64,
    /// Whether schemas live in the server's own registry (no `ksql.schema.registry.url`): then the
    /// schemas clients register through the server's Schema Registry API are kept in the command log.
    embedded_registry: bool,
    /// REST requests answered, by status code.
    pub requests: Mutex<BTreeMap<u16, u64>>,
    /// Pull queries answered: how long each took (from the request to the rows).
    pub pull_latency: eddy_kafka::latency::Latency,
    /// Pull queries that failed.
    pub pull_failed: AtomicU64,
    /// Push queries (and PRINTs) started.
    pub push_started: AtomicU64,
    /// The other servers sharing the service id, once this one announces itself.
    peers: std::sync::OnceLock<Arc<Peers>>,
    /// The status of every command run, by command id (`GET /status`).
    commands: Mutex<BTreeMap<String, CommandStatus>>,
    /// Who may use the REST API (open until `secure` says otherwise).
    access: std::sync::OnceLock<Arc<Access>>,
    /// How this server calls its peers.
    peer_client: std::sync::OnceLock<PeerClient>,
    /// The stores of tables over topics that pull queries read, by table name.
    table_feeds: Mutex<HashMap<String, Arc<TableFeed>>>,
}

/// ksqlDB's default `ksql.max.push.queries`.
pub const DEFAULT_MAX_PUSH_QUERIES: usize = 100;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads `auto.offset.reset` with or without ksqlDB's `ksql.streams.` prefix.
pub fn offset_reset(props: &Properties) -> String {
    props
        .get("auto.offset.reset")
        .or_else(|| props.get("ksql.streams.auto.offset.reset"))
        .cloned()
        .unwrap_or_else(|| "latest".to_string())
}

/// Request properties (JSON values) as the engine's string properties.
pub fn to_properties(map: &Map<String, Value>) -> Properties {
    map.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect()
}

impl AppState {
    /// Connects the engine to the cluster and replays the command log.
    /// Schemas go to `registry` when one is given, else to a registry of the server's own. The
    /// functions of the plugins `plugins` has loaded are registered before the replay. Queries
    /// are run as `defaults` say unless they say otherwise.
    pub fn start(
        cluster: Arc<KafkaCluster>,
        service_id: String,
        local_broker: Option<String>,
        registry: Option<Arc<dyn SchemaRegistry>>,
        plugins: Option<Arc<PluginDir>>,
        defaults: QueryDefaults,
    ) -> Result<Arc<Self>, Error> {
        let log = CommandLog::open(cluster.clone(), &service_id)?;
        let processing_log = Arc::new(
            ProcessingLog::open(cluster.clone(), &service_id)?.with_rows(defaults.log_rows),
        );
        let admin: Arc<dyn TopicAdmin> = cluster.clone();
        let embedded_registry = registry.is_none();
        let mut properties = defaults.properties.clone();
        let mut engine = Engine::new(admin);
        if let Some(dirs) = &defaults.models {
            // Model plugins read the catalog's directory: the one asked for, or, when it cannot be
            // written (a read-only data directory), one in the system's temporary directory.
            let fallback = std::env::temp_dir()
                .join(format!("eddy-models-{service_id}-{}", std::process::id()));
            let (written, dir) = match engine.with_model_dir(dirs.catalog.clone()) {
                Ok(e) => (e, dirs.catalog.clone()),
                Err(e) => {
                    tracing::warn!(
                        "{e}: the model catalog is written to {} instead",
                        fallback.display()
                    );
                    (
                        Engine::new(cluster.clone()).with_model_dir(fallback.clone())?,
                        fallback,
                    )
                }
            };
            engine = written;
            properties.insert(MODEL_DIR_PROPERTY.to_string(), dir.display().to_string());
        }
        engine = engine.with_properties(properties.clone());
        if let Some(registry) = registry {
            engine = engine.with_schema_registry(registry);
        }
        if let Some(dir) = plugins {
            let report = engine.attach_plugins(dir);
            for e in &report.errors {
                tracing::error!("UDF plugin not loaded: {e}");
            }
            for l in &report.loaded {
                tracing::info!("UDF plugin {l}");
            }
        }
        let state = Arc::new(AppState {
            engine: Mutex::new(engine),
            embedded_registry,
            table_feeds: Mutex::default(),
            peers: std::sync::OnceLock::new(),
            access: std::sync::OnceLock::new(),
            commands: Mutex::default(),
            peer_client: std::sync::OnceLock::new(),
            requests: Mutex::default(),
            pull_latency: Default::default(),
            pull_failed: AtomicU64::new(0),
            push_started: AtomicU64::new(0),
            cluster,
            log,
            processing_log,
            tasks: Mutex::new(HashMap::new()),
            shard_counts: Mutex::new(HashMap::new()),
            connectors: Mutex::new(HashMap::new()),
            push: Mutex::new(HashMap::new()),
            push_readers: SharedReaders::default(),
            max_push_queries: std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_PUSH_QUERIES),
            exactly_once: defaults.exactly_once,
            per_record_metrics: defaults.metrics,
            server_properties: properties,
            service_id,
            local_broker,
            seq: AtomicI64::new(0),
            log_next: AtomicI64::new(0),
            transient_seq: AtomicU64::new(0),
        });
        state.replay()?;
        if let Some(preload) = defaults.models.as_ref().and_then(|d| d.preload.as_ref()) {
            state.preload_models(preload);
        }
        Ok(state)
    }

    /// Registers every `<name>/<version>/` folder of `dir` that the catalog lacks (a version it
    /// holds with another graph is left as the catalog has it, with a warning).
    fn preload_models(&self, dir: &std::path::Path) {
        let folders = std::fs::read_dir(dir).into_iter().flatten().flatten();
        let mut found = Vec::new();
        for model in folders.filter(|e| e.path().is_dir()) {
            let versions = std::fs::read_dir(model.path())
                .into_iter()
                .flatten()
                .flatten();
            for v in versions {
                if let Some(version) = v.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                    found.push((
                        model.file_name().to_string_lossy().to_string(),
                        version,
                        v.path(),
                    ));
                }
            }
        }
        found.sort();
        for (name, version, folder) in found {
            let registered =
                eddy_runtime::model_catalog::read_folder(&folder).and_then(|(card, onnx)| {
                    lock(&self.engine).register_model(&name, Some(version), card, onnx)
                });
            match registered {
                Ok(Outcome::ModelRegistered {
                    entry: Some(entry), ..
                }) => {
                    if let Err(e) = self.log.append(&entry) {
                        tracing::error!("model {name}@{version} not kept in the command log: {e}");
                    }
                    tracing::info!(
                        "model {name}@{version} registered from {}",
                        folder.display()
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("model {} not registered: {e}", folder.display()),
            }
        }
    }

    fn replay(&self) -> Result<(), Error> {
        let (entries, next) = self.log.read_all()?;
        let mut engine = lock(&self.engine);
        for entry in &entries {
            let outcomes = apply(&mut engine, entry);
            self.record(&outcomes);
            self.seq.fetch_add(1, Ordering::SeqCst);
        }
        let queries: Vec<_> = engine.queries().values().cloned().collect();
        drop(engine);
        for q in queries {
            let props = entries
                .iter()
                .rev()
                .find(|e| e.get("queryId").and_then(Value::as_str) == Some(q.id.as_str()))
                .map(entry_properties)
                .unwrap_or_default();
            self.start_task(q.id.clone(), &props)?;
        }
        tracing::info!(
            "replayed {} commands, {} queries running",
            entries.len(),
            lock(&self.tasks).len()
        );
        self.log_next.store(next, Ordering::SeqCst);
        let connectors: Vec<String> = lock(&self.engine).connectors().keys().cloned().collect();
        for name in connectors {
            self.start_connector(&name);
        }
        Ok(())
    }

    /// Follows the command log on a thread of its own: what other servers of the service id were
    /// asked to run (a new stream, a query, a TERMINATE, RELOAD FUNCTIONS) this one runs too, within
    /// about a second. Ends when the state is dropped.
    pub fn follow_commands(self: &Arc<Self>) -> Result<(), Error> {
        let follower = self.log.follow(self.log_next.load(Ordering::SeqCst))?;
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("command-runner".into())
            .spawn(move || {
                loop {
                    let entries = follower.poll(COMMAND_POLL);
                    let Some(state) = me.upgrade() else { return };
                    for entry in entries.iter().filter(|e| !state.log.is_own(e)) {
                        state.run_command(entry);
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the command runner: {e}")))?;
        Ok(())
    }

    /// Runs a command another server wrote: the statement, then the tasks it starts or stops.
    fn run_command(&self, entry: &Value) {
        let outcomes = apply(&mut self.engine(), entry);
        self.seq.fetch_add(1, Ordering::SeqCst);
        let props = entry_properties(entry);
        self.record(&outcomes);
        for outcome in outcomes {
            match outcome {
                Outcome::QueryCreated { query_id, .. } => {
                    if let Err(e) = self.start_task(query_id.clone(), &props) {
                        tracing::error!(query = %query_id, "starting a query another server created: {e}");
                    }
                }
                Outcome::Dropped { terminated, .. } => self.stop_tasks(&terminated),
                Outcome::Terminated { query_ids } => self.stop_tasks(&query_ids),
                Outcome::ConnectorCreated {
                    name,
                    existed: false,
                } => self.start_connector(&name),
                Outcome::ConnectorDropped { name, .. } => self.stop_connector(&name),
                _ => {}
            }
        }
    }

    /// Starts the connector of that name (logged when it cannot start).
    fn start_connector(&self, name: &str) {
        let Some(connector) = lock(&self.engine).connectors().get(name).cloned() else {
            return;
        };
        let client_id =
            connector.mqtt.client_id.clone().unwrap_or_else(|| {
                format!("eddy-{}-{}", self.service_id, name.to_ascii_lowercase())
            });
        let lease_group = format!(
            "_eddy-{}-connector-{}",
            self.service_id,
            name.to_ascii_lowercase()
        );
        match start_mqtt_source(
            name,
            connector.mqtt,
            client_id,
            self.cluster.clone(),
            &lease_group,
        ) {
            Ok(task) => {
                lock(&self.connectors).insert(name.to_string(), task);
            }
            Err(e) => tracing::error!(connector = %name, "cannot start: {e}"),
        }
    }

    /// Stops the connector of that name, if it runs here.
    fn stop_connector(&self, name: &str) {
        let task = lock(&self.connectors).remove(name);
        drop(task);
    }

    /// Messages each connector running here has written, and whether it is connected.
    pub fn connector_states(&self) -> BTreeMap<String, (u64, bool)> {
        lock(&self.connectors)
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    (
                        t.stats.messages.load(Ordering::Relaxed),
                        t.stats.connected.load(Ordering::Relaxed),
                    ),
                )
            })
            .collect()
    }

    /// Announces this server, reachable at `url`, to the others sharing its service id, and learns of
    /// them (so pull queries can ask them for the state they hold).
    /// Keeps a push query (or PRINT) that started, for `/close-query`, and counts it.
    pub fn add_push(&self, id: String, task: QueryTask) {
        lock(&self.push).insert(id, task);
        self.push_started.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the status of what commands did, for `GET /status` (inserts are not commands).
    fn record(&self, outcomes: &[Outcome]) {
        let mut commands = lock(&self.commands);
        for outcome in outcomes.iter().filter(|o| !matches!(o, Outcome::Inserted)) {
            let (id, status) = command_status(outcome);
            commands.insert(id, status);
        }
    }

    /// Every server of the service id this one knows of, itself first (none before it announces
    /// itself).
    pub fn hosts(&self) -> Vec<eddy_kafka::peers::Host> {
        self.peers.get().map(|p| p.hosts()).unwrap_or_default()
    }

    /// The status of every command run, by command id.
    pub fn command_statuses(&self) -> BTreeMap<String, CommandStatus> {
        lock(&self.commands).clone()
    }

    /// Turns on the REST API's access rules and sets how peers are called; before serving, once.
    pub fn secure(&self, access: Access, peer_client: PeerClient) {
        let _ = self.access.set(Arc::new(access));
        let _ = self.peer_client.set(peer_client);
    }

    /// Who may use the REST API.
    pub fn access(&self) -> &Arc<Access> {
        self.access.get_or_init(|| Arc::new(Access::open()))
    }

    /// How this server calls its peers.
    pub fn peer_client(&self) -> &PeerClient {
        self.peer_client.get_or_init(PeerClient::default)
    }

    pub fn announce(self: &Arc<Self>, url: String) -> Result<(), Error> {
        let me = Arc::downgrade(self);
        let peers = Peers::start(self.cluster.clone(), &self.service_id, url, move || {
            me.upgrade().map(|s| s.holdings()).unwrap_or_default()
        })?;
        let _ = self.peers.set(peers);
        Ok(())
    }

    /// The shards of each stateful query's state this server holds.
    fn holdings(&self) -> BTreeMap<String, Vec<i32>> {
        self.engine()
            .queries()
            .values()
            .filter(|q| q.pipeline.is_stateful())
            .map(|q| {
                let shards = q.shards.lock().unwrap_or_else(|p| p.into_inner());
                (q.id.clone(), shards.keys().copied().collect())
            })
            .collect()
    }

    /// Whether [`AppState::remote_holders`] of `table` answers from memory: the server has no peers,
    /// or the shard count of the table's query is known (the first lookup asks the broker).
    pub fn holders_known(&self, table: &str) -> bool {
        self.peers.get().is_none()
            || self
                .table_query(table)
                .is_none_or(|id| lock(&self.shard_counts).contains_key(&id))
    }

    /// The id of the stateful query whose state is `table`.
    fn table_query(&self, table: &str) -> Option<String> {
        self.engine()
            .queries()
            .values()
            .find_map(|q| (q.sink == table && q.pipeline.is_stateful()).then(|| q.id.clone()))
    }

    /// The servers a pull query over `table` must also ask, for the shards of its state other than
    /// `local` (those the query reads here); an error when no live server holds some of them.
    pub fn remote_holders(&self, table: &str, local: &[i32]) -> Result<Vec<String>, Error> {
        let Some(peers) = self.peers.get() else {
            return Ok(Vec::new());
        };
        let Some(id) = self.table_query(table) else {
            return Ok(Vec::new());
        };
        let known = lock(&self.shard_counts).get(&id).copied();
        let shards = match known {
            Some(shards) => shards,
            None => {
                let Some(shards) = self
                    .cluster
                    .partitions(&changelog_topic(&self.group_id(&id)))?
                else {
                    return Ok(Vec::new());
                };
                lock(&self.shard_counts).insert(id.clone(), shards);
                shards
            }
        };
        let missing: Vec<i32> = (0..shards).filter(|s| !local.contains(s)).collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let (holders, unheld) = peers.holders(&id, &missing);
        if !unheld.is_empty() {
            return Err(Error::Execution(format!(
                "The state of {table} (shards {unheld:?}) is on no server right now: it is being restored or moved. Retry in a few seconds."
            )));
        }
        Ok(holders.into_iter().map(|(url, _)| url).collect())
    }

    /// Stops every query task (persistent and push); the state is unusable afterwards.
    pub fn shutdown(&self) {
        if let Some(peers) = self.peers.get() {
            peers.stop();
        }
        let tasks: Vec<QueryTask> = lock(&self.tasks)
            .drain()
            .chain(lock(&self.push).drain())
            .map(|(_, t)| t)
            .collect();
        for t in tasks {
            t.stop();
        }
        lock(&self.connectors).clear();
    }

    /// The engine, locked.
    /// The store of `source` when it is a table over a topic (with keys that are not windowed),
    /// started by its first pull query and kept current from then on; `None` for other sources.
    /// Stores of tables dropped or replaced since are stopped.
    pub fn table_store(&self, source: &Arc<Source>) -> Result<Option<Arc<TableFeed>>, Error> {
        if source.kind != SourceKind::Table || source.window.is_some() {
            return Ok(None);
        }
        let (live, registry): (Vec<Arc<Source>>, _) = {
            let engine = self.engine();
            (
                engine.catalog().sources().cloned().collect(),
                engine.schema_registry().clone(),
            )
        };
        let mut feeds = lock(&self.table_feeds);
        feeds.retain(|_, feed| {
            let held = feed.source();
            live.iter().any(|s| Arc::ptr_eq(s, &held))
        });
        if let Some(feed) = feeds.get(&source.name)
            && Arc::ptr_eq(&feed.source(), source)
        {
            return Ok(Some(feed.clone()));
        }
        let feed = Arc::new(TableFeed::start(&self.cluster, source, &registry)?);
        feeds.insert(source.name.clone(), feed.clone());
        Ok(Some(feed))
    }

    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    /// Registers a schema a client sent to the server's Schema Registry API; in the server's own
    /// registry it is kept in the command log, so its id survives restarts.
    pub fn register_schema(&self, subject: &str, schema: &RegisteredSchema) -> Result<u32, Error> {
        let engine = self.engine();
        let registry = engine.schema_registry().clone();
        let known = registry.latest(subject)?.is_some_and(|(_, s)| s == *schema);
        let id = registry.register(subject, schema)?;
        if self.embedded_registry && !known {
            self.log.append(&json!({"schema": {
                "subject": subject,
                "id": id,
                "schemaType": schema.kind.as_str(),
                "schema": schema.text,
            }}))?;
        }
        Ok(id)
    }

    /// A fresh id for a transient query over `source`.
    pub fn transient_id(&self, source: &str) -> String {
        let n = self.transient_seq.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("transient_{source}_{}{n}", nanos)
    }

    /// Starts a persistent query's task with the properties it was created with (where to start
    /// reading, how long to wait before retrying it when it fails).
    fn start_task(&self, id: String, props: &Properties) -> Result<(), Error> {
        let Some(query) = self.engine().query(&id).cloned() else {
            return Ok(());
        };
        let group = self.group_id(&id);
        let config = TaskConfig {
            backoff: Backoff::from_properties(props),
            processing_log: Some(self.processing_log.clone()),
            exactly_once: exactly_once_guarantee(props, self.exactly_once)?,
            max_task_idle: max_task_idle(props)?,
            metrics: self.per_record_metrics,
            ..TaskConfig::new(group, &offset_reset(props))
        };
        let task = start_persistent(self.cluster.clone(), query, &config)?;
        lock(&self.shard_counts).remove(&id);
        if let Some(old) = lock(&self.tasks).insert(id, task) {
            old.stop();
        }
        Ok(())
    }

    /// The consumer group of a persistent query.
    fn group_id(&self, query_id: &str) -> String {
        format!("_eddy-{}_query_{}", self.service_id, query_id)
    }

    /// Stops terminated queries and deletes their internal topics (state changelogs, repartition
    /// topics).
    fn stop_tasks(&self, ids: &[String]) {
        for id in ids {
            lock(&self.shard_counts).remove(id);
            if let Some(t) = lock(&self.tasks).remove(id) {
                t.stop();
            }
        }
        let topics = match self.cluster.list_topics() {
            Ok(topics) => topics,
            Err(e) => {
                tracing::warn!(
                    "could not list the topics to delete the queries' internal ones: {e}"
                );
                return;
            }
        };
        for id in ids {
            let group = self.group_id(id);
            for topic in topics.iter().filter(|t| is_internal_topic(&group, &t.name)) {
                if let Err(e) = self.cluster.delete_topic(&topic.name) {
                    tracing::warn!("could not delete {}: {e}", topic.name);
                }
            }
        }
    }

    /// Listing views of the persistent queries with their counters.
    pub fn query_views(&self) -> Vec<QueryView> {
        let engine = self.engine();
        let tasks = lock(&self.tasks);
        engine
            .queries()
            .values()
            .map(|q| {
                let task = tasks.get(&q.id);
                let stat = |f: fn(&eddy_kafka::QueryStats) -> &std::sync::atomic::AtomicU64| {
                    task.map(|t| f(&t.stats).load(Ordering::Relaxed))
                        .unwrap_or(0)
                };
                QueryView {
                    id: q.id.clone(),
                    statement: q.statement.clone(),
                    sink: q.sink.clone(),
                    sink_topic: q.sink_spec.topic.clone(),
                    sources: q.source_names(),
                    input_topics: q
                        .pipeline
                        .inputs()
                        .iter()
                        .map(|s| s.topic.clone())
                        .collect(),
                    group: self.group_id(&q.id),
                    state: match task {
                        Some(t) if !t.is_finished() && t.stats.failure().is_none() => {
                            "RUNNING".into()
                        }
                        _ => "ERROR".into(),
                    },
                    consumed: stat(|s| &s.consumed),
                    consumed_bytes: stat(|s| &s.consumed_bytes),
                    produced: stat(|s| &s.produced),
                    decode_errors: stat(|s| &s.decode_errors),
                    expression_errors: stat(|s| &s.expression_errors),
                    late_records: stat(|s| &s.late_records),
                    latency: task.map(|t| t.stats.latency.snapshot()),
                    last_error: task.and_then(|t| lock(&t.stats.last_error).clone()),
                    pipeline: q.pipeline.clone(),
                }
            })
            .collect()
    }

    /// The properties a request runs with: the server's, with the request's over them (only those
    /// a statement may set).
    pub fn properties(&self, request: &Properties) -> Result<Properties, Error> {
        check_request(request)?;
        let mut props = self.server_properties.clone();
        props.extend(request.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(props)
    }

    /// Parses a `/ksql` script with the request's properties and session variables (`${name}` is
    /// substituted unless the properties turn it off).
    pub fn parse_script(
        &self,
        sql: &str,
        request_props: &Properties,
        session_variables: &Map<String, Value>,
    ) -> Result<Script, ErrorMessage> {
        let props = self
            .properties(request_props)
            .map_err(|e| ErrorMessage::statement(&e, sql))?;
        let variables = session(session_variables, &props);
        let types = self.engine().types().clone();
        let statements = eddy_sql::parse_with(sql, &mut variables.clone(), &types)
            .map_err(|e| ErrorMessage::statement(&e, sql))?;
        Ok(Script {
            statements,
            props,
            variables,
        })
    }

    /// Runs a script's statements in a sandbox, as they would run, and fails with the first error:
    /// so that a script runs whole or not at all, as far as its statements can be checked before
    /// they run (a topic may still fail to be created). A script of one statement is not run twice.
    fn validate(&self, script: &Script) -> Result<(), ErrorMessage> {
        let changes = script
            .statements
            .iter()
            .filter(|s| !s.statement.is_read_only())
            .count();
        let queries = script
            .statements
            .iter()
            .any(|s| matches!(s.statement, Statement::Select(_) | Statement::Print { .. }));
        if changes < 2 && !(changes == 1 && queries) {
            return Ok(());
        }
        let mut sandbox = self.engine().sandbox();
        let mut props = script.props.clone();
        for s in &script.statements {
            let fail = |e: Error| {
                let mut m = ErrorMessage::statement(&e, &s.text);
                m.entities = Some(Vec::new());
                m
            };
            match &s.statement {
                Statement::Set { name, value } => {
                    let set = Properties::from([(name.clone(), value.clone())]);
                    check_request(&set).map_err(fail)?;
                    props.extend(set);
                }
                Statement::Unset { name } => {
                    props.remove(name);
                }
                Statement::Select(_) | Statement::Print { .. } => {
                    return Err(query_on_ksql(&s.text, Vec::new()));
                }
                Statement::Describe { name, .. } => {
                    if sandbox.catalog().get(name).is_none() {
                        return Err(fail(missing_source(name)));
                    }
                }
                Statement::ReloadFunctions => {}
                other if other.is_read_only() => {}
                _ => {
                    sandbox.execute(s, &props).map_err(fail)?;
                }
            }
        }
        Ok(())
    }

    /// Executes a `/ksql` script once all of it validates: statement by statement, returning the
    /// entities, or the error of the first failing statement together with the entities of those
    /// before it.
    pub fn execute_script(&self, script: Script) -> Result<Vec<Value>, ErrorMessage> {
        self.validate(&script)?;
        let Script {
            statements,
            mut props,
            mut variables,
        } = script;
        let mut entities = Vec::new();
        for s in statements {
            let fail = |e: Error, entities: &Vec<Value>| {
                let mut m = ErrorMessage::statement(&e, &s.text);
                m.entities = Some(entities.clone());
                m
            };
            let entity = match &s.statement {
                Statement::Set { name, value } => {
                    let set = Properties::from([(name.clone(), value.clone())]);
                    check_request(&set).map_err(|e| fail(e, &entities))?;
                    props.extend(set);
                    continue;
                }
                Statement::Unset { name } => {
                    props.remove(name);
                    continue;
                }
                Statement::Define { name, value } => {
                    variables.define(name, value);
                    continue;
                }
                Statement::Undefine { name } => {
                    variables.undefine(name);
                    continue;
                }
                Statement::Select(_) | Statement::Print { .. } => {
                    return Err(query_on_ksql(&s.text, entities));
                }
                Statement::Show { kind, extended } => self
                    .show(&s.text, *kind, *extended, &props, &variables)
                    .map_err(|e| fail(e, &entities))?,
                Statement::Describe { name, extended } => {
                    let engine = self.engine();
                    let source = engine
                        .catalog()
                        .get(name)
                        .cloned()
                        .ok_or_else(|| fail(missing_source(name), &entities))?;
                    drop(engine);
                    let partitions = if *extended {
                        self.cluster
                            .partitions(&source.topic)
                            .ok()
                            .flatten()
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    let views = self.query_views();
                    json!({"@type": "sourceDescription", "statementText": s.text, "sourceDescription": entity::source_description(&source, &views, *extended, partitions), "warnings": []})
                }
                Statement::DescribeAll { kind, extended } => {
                    let sources: Vec<_> = self
                        .engine()
                        .catalog()
                        .sources()
                        .filter(|x| x.kind == *kind)
                        .cloned()
                        .collect();
                    let views = self.query_views();
                    let list: Vec<Value> = sources
                        .iter()
                        .map(|x| entity::source_description(x, &views, *extended, 0))
                        .collect();
                    json!({"@type": "source_descriptions", "statementText": s.text, "sourceDescriptions": list, "warnings": []})
                }
                Statement::DescribeConnector { name } => connector_entities::connector_description(
                    &s.text,
                    &self.engine(),
                    &self.connector_states(),
                    name,
                )
                .map_err(|e| fail(e, &entities))?,
                Statement::DescribeModel { name } => {
                    model_entities::model_description(&s.text, &self.engine(), name)
                        .map_err(|e| fail(e, &entities))?
                }
                Statement::DescribeFunction { name } => function_entities::describe_function(
                    &s.text,
                    &self.engine(),
                    name,
                )
                .ok_or_else(|| {
                    fail(
                        Error::Plan(format!("Can't find any functions with the name '{name}'")),
                        &entities,
                    )
                })?,
                Statement::AssertTopic {
                    name,
                    exists,
                    properties,
                    timeout_ms,
                } => assertions::assert_topic(
                    self.cluster.as_ref(),
                    &s.text,
                    name,
                    *exists,
                    properties,
                    *timeout_ms,
                )
                .map_err(|e| fail(e, &entities))?,
                Statement::AssertSchema {
                    subject,
                    id,
                    exists,
                    timeout_ms,
                } => {
                    let registry = self.engine().schema_registry().clone();
                    assertions::assert_schema(
                        registry.as_ref(),
                        &s.text,
                        subject.as_deref(),
                        *id,
                        *exists,
                        *timeout_ms,
                    )
                    .map_err(|e| fail(e, &entities))?
                }
                Statement::Explain(target) => self
                    .explain(&s.text, target, &props)
                    .map_err(|e| fail(e, &entities))?,
                _ => {
                    let (outcome, pinned) = {
                        let mut engine = self.engine();
                        let outcome = engine.execute(&s, &props).map_err(|e| fail(e, &entities))?;
                        let pinned = pinned_models(&engine, &outcome);
                        (outcome, pinned)
                    };
                    match self
                        .commit(&s.text, &props, pinned, outcome)
                        .map_err(|e| fail(e, &entities))?
                    {
                        Some(entity) => entity,
                        None => continue,
                    }
                }
            };
            entities.push(entity);
        }
        Ok(entities)
    }

    /// What follows a statement that changed something: its command-log entry (with the model
    /// versions a new query pinned), its status, the tasks it starts or stops; the entity
    /// answered (none for an insert).
    fn commit(
        &self,
        text: &str,
        props: &Properties,
        pinned: Option<String>,
        outcome: Outcome,
    ) -> Result<Option<Value>, Error> {
        let query_id = match &outcome {
            Outcome::QueryCreated { query_id, .. } => Some(query_id.clone()),
            _ => None,
        };
        let mut logged = props.clone();
        if let Some(pinned) = pinned {
            logged.insert(model_refs::PINNED.to_string(), pinned);
        }
        // RELOAD FUNCTIONS is logged for the other servers (at a start it finds nothing changed
        // since the plugins were loaded); a new model version is logged as its record (the graph,
        // not the folder it was read from).
        let entry = match &outcome {
            Outcome::Inserted
            | Outcome::SourceExists { .. }
            | Outcome::DropSkipped { .. }
            | Outcome::ModelRegistered { entry: None, .. } => None,
            Outcome::ModelDropped { versions, .. } if versions.is_empty() => None,
            Outcome::ModelRegistered {
                entry: Some(record),
                ..
            } => Some(record.clone()),
            _ => Some(json!({"statement": text, "properties": logged, "queryId": query_id})),
        };
        if let Some(entry) = entry {
            self.log.append(&entry)?;
        }
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.record(std::slice::from_ref(&outcome));
        match &outcome {
            Outcome::QueryCreated { query_id, .. } => self.start_task(query_id.clone(), props)?,
            Outcome::Dropped { terminated, .. } => self.stop_tasks(terminated),
            Outcome::Terminated { query_ids } => self.stop_tasks(query_ids),
            Outcome::ConnectorCreated {
                name,
                existed: false,
            } => self.start_connector(name),
            Outcome::ConnectorDropped { name, .. } => self.stop_connector(name),
            _ => {}
        }
        if matches!(outcome, Outcome::Inserted) {
            return Ok(None);
        }
        Ok(Some(entity::current_status(text, &outcome, seq)))
    }

    /// Registers an uploaded model version (`POST /models/{name}`), as `CREATE MODEL` does.
    pub fn upload_model(
        &self,
        name: &str,
        version: Option<u32>,
        card: Value,
        onnx: Vec<u8>,
    ) -> Result<Value, Error> {
        let outcome = self.engine().register_model(name, version, card, onnx)?;
        let text = format!("CREATE MODEL {name} (uploaded)");
        Ok(self
            .commit(&text, &Properties::new(), None, outcome)?
            .unwrap_or(Value::Null))
    }

    /// `EXPLAIN`: a running query, or a query statement planned in a sandbox.
    fn explain(
        &self,
        text: &str,
        target: &ExplainTarget,
        props: &Properties,
    ) -> Result<Value, Error> {
        let description = match target {
            ExplainTarget::Query(id) => {
                let view = self
                    .query_views()
                    .into_iter()
                    .find(|v| v.id.eq_ignore_ascii_case(id))
                    .ok_or_else(|| {
                        Error::Plan(format!(
                            "Query with id:{id} does not exist, use SHOW QUERIES to view the full set of queries."
                        ))
                    })?;
                self.running_description(&view, &self.cluster.list_topics()?)
            }
            ExplainTarget::Statement(statement) => {
                let inner = text
                    .trim_start()
                    .get("EXPLAIN".len()..)
                    .unwrap_or_default()
                    .trim_start();
                let engine = self.engine();
                match statement.as_ref() {
                    Statement::Select(q) => {
                        let pipeline = engine.plan_transient(q)?;
                        QueryDescription::planned("", inner, &pipeline.plan, Vec::new(), "PUSH")
                    }
                    _ => {
                        let mut sandbox = engine.sandbox();
                        drop(engine);
                        let parsed = eddy_sql::ParsedStatement {
                            statement: statement.as_ref().clone(),
                            text: inner.to_string(),
                            position: eddy_common::Position { line: 1, column: 1 },
                        };
                        let Outcome::QueryCreated { query_id, .. } =
                            sandbox.execute(&parsed, props)?
                        else {
                            return Err(Error::Plan(
                                "EXPLAIN found no query in the statement".into(),
                            ));
                        };
                        let query = sandbox.query(&query_id).ok_or_else(|| {
                            Error::Internal(format!("the planned query {query_id} is missing"))
                        })?;
                        QueryDescription::planned(
                            &query_id,
                            inner,
                            &query.pipeline.plan,
                            vec![query.sink.clone()],
                            "PERSISTENT",
                        )
                    }
                }
            }
        };
        Ok(query_description::explained(text, description))
    }

    /// A running query's description, with the internal topics among `topics` it keeps.
    fn running_description(&self, view: &QueryView, topics: &[TopicInfo]) -> QueryDescription {
        let internal: Vec<String> = topics
            .iter()
            .filter(|t| is_internal_topic(&view.group, &t.name))
            .map(|t| t.name.clone())
            .collect();
        let hosts = self.hosts();
        QueryDescription::running(view, &internal, hosts.first().map(|h| h.url.as_str()))
    }

    fn show(
        &self,
        text: &str,
        kind: ShowKind,
        extended: bool,
        props: &Properties,
        variables: &Variables,
    ) -> Result<Value, Error> {
        Ok(match kind {
            ShowKind::Streams => entity::source_list(text, &self.engine(), SourceKind::Stream),
            ShowKind::Tables => entity::source_list(text, &self.engine(), SourceKind::Table),
            ShowKind::Queries if extended => {
                let views = self.query_views();
                let topics = self.cluster.list_topics()?;
                let list = views
                    .iter()
                    .map(|view| self.running_description(view, &topics))
                    .collect();
                query_description::descriptions(text, list)
            }
            ShowKind::Queries => entity::queries(text, &self.query_views()),
            ShowKind::Topics => entity::topics(text, &self.cluster.list_topics()?),
            ShowKind::Functions => function_entities::functions(text, &self.engine()),
            ShowKind::Properties => {
                let mut all: BTreeMap<String, String> = BTreeMap::new();
                all.insert("ksql.service.id".into(), self.service_id.clone());
                all.insert(
                    "ksql.streams.bootstrap.servers".into(),
                    self.cluster.bootstrap().to_string(),
                );
                all.insert("ksql.streams.auto.offset.reset".into(), "latest".into());
                all.extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
                entity::properties(text, &all.into_iter().collect::<Vec<_>>())
            }
            ShowKind::Variables => variable_list(text, variables),
            ShowKind::Types => entity::types(text, self.engine().types()),
            ShowKind::Models => model_entities::model_list(text, &self.engine()),
            ShowKind::Connectors => {
                connector_entities::connector_list(text, &self.engine(), &self.connector_states())
            }
        })
    }
}

/// A `/ksql` script parsed with its request's properties and variables.
pub struct Script {
    statements: Vec<eddy_sql::ParsedStatement>,
    /// The server's properties with the request's over them.
    props: Properties,
    /// The request's session variables (the script's DEFINEs are applied as it runs).
    variables: Variables,
}

impl Script {
    pub fn statements(&self) -> &[eddy_sql::ParsedStatement] {
        &self.statements
    }
}

/// The session variables a request brought, substituted unless `props` turn substitution off.
pub fn session(values: &Map<String, Value>, props: &Properties) -> Variables {
    let values = to_properties(values);
    Variables::new(
        values.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        Variables::substitution_enabled(props.get(SUBSTITUTION_PROPERTY).map(String::as_str)),
    )
}

/// ksqlDB's error for a query sent to `/ksql`, after the entities of the statements before it.
fn query_on_ksql(text: &str, entities: Vec<Value>) -> ErrorMessage {
    let mut m = ErrorMessage::statement(
        &Error::BadRequest(
            "The following statement types should be issued to the websocket endpoint '/query': PRINT, SELECT".into(),
        ),
        text,
    );
    m.error_code = 40002;
    m.entities = Some(entities);
    m
}

/// ksqlDB's error for a DESCRIBE of a source that does not exist.
fn missing_source(name: &str) -> Error {
    Error::Plan(format!(
        "Could not find STREAM/TABLE '{name}' in the Metastore"
    ))
}

/// The versions of catalog models a query just created pinned, as its property value.
fn pinned_models(engine: &Engine, outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::QueryCreated { query_id, .. } => engine
            .query(query_id)
            .and_then(|q| model_refs::pins_property(&q.models)),
        _ => None,
    }
}

/// How long the command runner waits for new commands at a time.
const COMMAND_POLL: Duration = Duration::from_millis(500);

/// The properties a command ran with.
fn entry_properties(entry: &Value) -> Properties {
    entry
        .get("properties")
        .and_then(Value::as_object)
        .map(to_properties)
        .unwrap_or_default()
}

/// Applies a command-log entry to the engine (a registered schema, or statements), returning what
/// its statements did; a failure is logged (the log holds only statements that ran somewhere).
fn apply(engine: &mut Engine, entry: &Value) -> Vec<Outcome> {
    if let Some(model) = entry.get("model") {
        if let Err(e) = engine.restore_model(model) {
            tracing::error!("replaying a registered model: {e}");
        }
        return Vec::new();
    }
    if let Some(schema) = entry.get("schema") {
        if let Err(e) = restore_schema(engine.schema_registry().as_ref(), schema) {
            tracing::error!("replaying a registered schema {schema}: {e}");
        }
        return Vec::new();
    }
    let text = entry
        .get("statement")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let props = entry_properties(entry);
    let types = engine.types().clone();
    let result = eddy_sql::parse_with(text, &mut Variables::default(), &types).and_then(|stmts| {
        stmts
            .iter()
            .map(|s| engine.execute(s, &props))
            .collect::<Result<Vec<_>, _>>()
    });
    result.unwrap_or_else(|e| {
        tracing::error!("running a command of the command log: {text}: {e}");
        Vec::new()
    })
}

/// Registers a schema kept in the command log under its id again.
fn restore_schema(registry: &dyn SchemaRegistry, entry: &Value) -> Result<(), Error> {
    let text = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or_default();
    let kind = SchemaKind::from_name(entry.get("schemaType").and_then(Value::as_str));
    let id = entry.get("id").and_then(Value::as_u64).unwrap_or_default() as u32;
    registry.register_with_id(
        text("subject"),
        &RegisteredSchema {
            kind,
            text: text("schema").to_string(),
        },
        id,
    )
}
