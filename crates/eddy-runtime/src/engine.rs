//! The statement engine: executes DDL and DML against the catalog and the cluster, and plans the
//! pipelines of persistent and transient queries. Running queries is the host's job (the server over
//! Kafka, the golden runner over in-memory topics).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;

use eddy_common::{Result, exec_err, not_supported, plan_err};
use eddy_sql::alias_route::AliasRoute;
use eddy_sql::catalog::{
    Catalog, Column, Format, FormatKind, ROWTIME, Source, SourceDefaults, schema_text,
    timestamp_column,
};
use eddy_sql::planner::Planner;
use eddy_sql::statement::{
    ColumnDef, ColumnRole, CreateSource, QueryStatement, SourceKind, Statement,
};
use eddy_sql::{ParsedStatement, SqlType, Types};

use crate::admin::TopicAdmin;
use crate::connector::Connector;
use crate::format::SinkEncoder;
use crate::format::column::{Cell, ColumnBuilder};
use crate::format::encode::PartEncoder;
use crate::functions::{FunctionsReport, PluginDir, PluginFunctions};
use crate::infer::{Inferred, infer_part};
use crate::model_catalog::{ModelCatalog, Registered, read_folder};
use crate::model_refs::{ModelUse, Pinned, pin, pins};
use crate::partitioner::partition_for;
use crate::pipeline::{Pipeline, SinkSpec};
use crate::pull::PullQuery;
use crate::record::Record;
use crate::registry::{MemoryRegistry, SchemaRegistry, subject};
use crate::sandbox::{SandboxAdmin, SandboxRegistry};

/// Default partition count of topics created for `CREATE ... AS SELECT` when the source's is unknown.
const DEFAULT_PARTITIONS: i32 = 1;

pub use crate::properties::Properties;

/// A persistent query (`CREATE ... AS SELECT`, `INSERT INTO ... SELECT`).
#[derive(Debug, Clone)]
pub struct PersistentQuery {
    pub id: String,
    /// The statement that started the query.
    pub statement: String,
    pub sink: String,
    pub pipeline: Arc<Pipeline>,
    pub sink_spec: SinkSpec,
    /// How often a stateful query writes its changelog, commits its input and (with per-commit
    /// emission) emits its changed rows.
    pub commit_interval: Duration,
    /// When the host keeps an aggregation's state per input partition (its groups follow
    /// partitions), the pipeline of each partition it owns; empty when `pipeline` holds the state.
    pub shards: Shards,
    /// The catalog models it scores with: pinned versions and aliases.
    pub models: Vec<ModelUse>,
}

/// The pipelines holding a query's state, by input partition.
pub type Shards = Arc<std::sync::Mutex<BTreeMap<i32, Arc<Pipeline>>>>;

/// ksqlDB's default commit interval.
const DEFAULT_COMMIT_INTERVAL_MS: u64 = 2_000;

/// Most keys a pull query looks up one by one; beyond, it reads the whole table.
const MAX_LOOKUPS: usize = 10_000;

impl PersistentQuery {
    /// A query running `plan` into `sink`. With `durable` state, an aggregation or a stream-stream
    /// join logs its state changes for a changelog, and an aggregation, unless the record cache is
    /// off (`ksql.streams.cache.max.bytes.buffering=0`), emits once per commit interval.
    fn new(
        id: String,
        statement: &str,
        sink: &Source,
        plan: eddy_sql::planner::QueryPlan,
        durable: bool,
        props: &Properties,
        registry: &Arc<dyn SchemaRegistry>,
    ) -> Result<Self> {
        let sink_spec = SinkSpec::new(sink, &plan.columns, registry)?;
        let setting = |names: [&str; 2]| names.iter().find_map(|n| props.get(*n));
        let number = |names: [&str; 2], default: u64| -> Result<u64> {
            match setting(names) {
                Some(v) => v.trim().parse().map_err(|_| {
                    plan_err!(
                        "Invalid value {v} for property {}: it must be a number",
                        names[0]
                    )
                }),
                None => Ok(default),
            }
        };
        let commit_interval = Duration::from_millis(number(
            ["ksql.streams.commit.interval.ms", "commit.interval.ms"],
            DEFAULT_COMMIT_INTERVAL_MS,
        )?);
        let cache = number(
            [
                "ksql.streams.cache.max.bytes.buffering",
                "cache.max.bytes.buffering",
            ],
            1,
        )?;
        // A server runs an aggregation over joins as two tasks joined by an internal topic
        // (`Pipeline::split_joins`), which carries rows of streams only.
        if durable
            && plan.join.is_some()
            && plan.aggregate.is_some()
            && plan.source.kind == SourceKind::Table
        {
            return Err(eddy_common::not_supported!(
                "Aggregating the rows of a join of tables (table-table or foreign-key) is not supported yet: write the join into a table with one query and aggregate that table with another."
            ));
        }
        let mut pipeline = Pipeline::new(plan, registry)?;
        if durable && pipeline.is_stateful() && cache > 0 {
            pipeline = pipeline.per_commit();
        }
        if durable && pipeline.persists_state() {
            pipeline = pipeline.logged()?;
        }
        Ok(PersistentQuery {
            id,
            statement: statement.to_string(),
            sink: sink.name.clone(),
            pipeline: Arc::new(pipeline),
            sink_spec,
            commit_interval,
            shards: Shards::default(),
            models: Vec::new(),
        })
    }

    /// The pipelines whose state holds the query's table now: each owned partition's, or the one.
    pub fn tables(&self) -> (Vec<i32>, Vec<Arc<Pipeline>>) {
        let shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        if shards.is_empty() {
            (Vec::new(), vec![self.pipeline.clone()])
        } else {
            (
                shards.keys().copied().collect(),
                shards.values().cloned().collect(),
            )
        }
    }

    /// The sources the query reads (each source of a join).
    pub fn source_names(&self) -> Vec<String> {
        self.pipeline
            .inputs()
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }
}

/// What executing a statement did; hosts turn it into responses.
#[derive(Debug, Clone)]
pub enum Outcome {
    SourceCreated {
        kind: SourceKind,
        name: String,
    },
    /// The source existed and the statement said `IF NOT EXISTS`.
    SourceExists {
        kind: SourceKind,
        name: String,
    },
    QueryCreated {
        query_id: String,
        kind: Option<SourceKind>,
        sink: String,
    },
    Dropped {
        kind: SourceKind,
        name: String,
        topic: String,
        terminated: Vec<String>,
    },
    DropSkipped {
        kind: SourceKind,
        name: String,
    },
    Terminated {
        query_ids: Vec<String>,
    },
    Inserted,
    /// `ALTER STREAM|TABLE ... ADD COLUMN`.
    Altered {
        kind: SourceKind,
        name: String,
    },
    /// `RELOAD FUNCTIONS`: what was loaded and what failed.
    FunctionsReloaded(FunctionsReport),
    /// `CREATE TYPE`: the type the name stands for (`existed`: it was registered before, and the
    /// statement said `IF NOT EXISTS`).
    TypeRegistered {
        name: String,
        sql_type: SqlType,
        existed: bool,
    },
    /// `DROP TYPE` (`existed`: false when `IF EXISTS` found none).
    TypeDropped {
        name: String,
        existed: bool,
    },
    /// `CREATE MODEL`: the version registered (`existed`: the same graph and card were registered
    /// as that version already) and, for a new one, the record hosts keep in their command log.
    ModelRegistered {
        name: String,
        version: u32,
        existed: bool,
        entry: Option<serde_json::Value>,
    },
    /// `ALTER MODEL ... SET|DROP ALIAS`: where the alias pointed before and points now.
    ModelAliased {
        name: String,
        alias: String,
        before: Option<AliasRoute>,
        route: Option<AliasRoute>,
    },
    /// `DROP MODEL` (no versions: `IF EXISTS` found none).
    ModelDropped {
        name: String,
        versions: Vec<u32>,
    },
    /// `CREATE SOURCE CONNECTOR` (`existed`: it did, and the statement said `IF NOT EXISTS`).
    ConnectorCreated {
        name: String,
        existed: bool,
    },
    /// `DROP CONNECTOR` (`existed`: false when `IF EXISTS` found none).
    ConnectorDropped {
        name: String,
        existed: bool,
    },
}

/// Executes statements against a catalog; holds the persistent queries' plans.
pub struct Engine {
    catalog: Catalog,
    planner: Planner,
    admin: Arc<dyn TopicAdmin>,
    queries: BTreeMap<String, PersistentQuery>,
    next_query: u64,
    /// Server-level properties (overridden per request).
    pub properties: Properties,
    /// Whether persistent queries may keep state in memory only (see [`Engine::with_volatile_state`]).
    volatile_state: bool,
    /// Where AVRO, PROTOBUF and JSON_SR schemas are registered and looked up.
    registry: Arc<dyn SchemaRegistry>,
    /// Functions loaded from UDF plugins.
    plugins: PluginFunctions,
    /// The types `CREATE TYPE` named, by upper-case name.
    types: Types,
    /// The models `CREATE MODEL` registered.
    models: ModelCatalog,
    /// The source connectors, by name.
    connectors: BTreeMap<String, Connector>,
    /// Plans of key lookups without their WHERE, by the query's text without it (see
    /// [`Engine::plan_pull`]); forgotten whenever a statement, a model or a plugin changes anything.
    lookup_plans: Mutex<HashMap<String, Pipeline>>,
}

impl Engine {
    /// An engine with an empty catalog over the given cluster.
    pub fn new(admin: Arc<dyn TopicAdmin>) -> Self {
        Engine {
            catalog: Catalog::default(),
            planner: Planner::new(),
            admin,
            queries: BTreeMap::new(),
            next_query: 0,
            properties: Properties::new(),
            volatile_state: false,
            registry: MemoryRegistry::shared(),
            plugins: PluginFunctions::default(),
            types: Types::new(),
            models: ModelCatalog::default(),
            connectors: BTreeMap::new(),
            lookup_plans: Mutex::new(HashMap::new()),
        }
    }

    /// The source connectors, by name.
    pub fn connectors(&self) -> &BTreeMap<String, Connector> {
        &self.connectors
    }

    /// Writes the model catalog out to `dir`, in the layout model plugins read (emptying it first).
    pub fn with_model_dir(mut self, dir: std::path::PathBuf) -> Result<Self> {
        self.models = ModelCatalog::in_dir(dir)?;
        Ok(self)
    }

    /// The model catalog.
    pub fn models(&self) -> &ModelCatalog {
        &self.models
    }

    /// Registers a model version (a REST upload, a preloaded folder); see `CREATE MODEL`.
    pub fn register_model(
        &mut self,
        name: &str,
        version: Option<u32>,
        card: serde_json::Value,
        onnx: Vec<u8>,
    ) -> Result<Outcome> {
        let (registered, entry) = self.models.register(name, version, card, onnx, now_ms())?;
        let name = crate::model_catalog::model_name(name)?;
        if let Registered::New(version) = registered
            && let Err(e) = self.check_model(&name, version)
        {
            self.models.drop(&name, Some(version))?;
            return Err(e);
        }
        Ok(match registered {
            Registered::New(version) => Outcome::ModelRegistered {
                entry: Some(entry.entry(&name)),
                name,
                version,
                existed: false,
            },
            Registered::Same(version) => Outcome::ModelRegistered {
                name,
                version,
                existed: true,
                entry: None,
            },
        })
    }

    /// Whether the model plugin loads version `version` of `name` (when the catalog is written
    /// out where the plugin reads it).
    fn check_model(&self, name: &str, version: u32) -> Result<()> {
        if self.models.dir().is_none() {
            return Ok(());
        }
        self.plugins
            .check_model(&format!("{name}@{version}"), &self.properties)
            .map_err(|e| plan_err!("Model {name}@{version} cannot be used: {e}"))
    }

    /// Restores a model version from its command-log record.
    pub fn restore_model(&mut self, record: &serde_json::Value) -> Result<u32> {
        self.forget_lookup_plans();
        self.models.restore(record)
    }

    /// Runs statements with the server's `properties` under each statement's own (plugins are
    /// configured from their `ksql.functions.<name>.<key>` settings).
    pub fn with_properties(mut self, properties: Properties) -> Self {
        self.properties = properties;
        self
    }

    /// Registers the functions of the plugins `dir` has loaded (and loads from it on
    /// `RELOAD FUNCTIONS`); returns what was registered and what was refused.
    pub fn attach_plugins(&mut self, dir: Arc<PluginDir>) -> FunctionsReport {
        self.forget_lookup_plans();
        self.plugins
            .attach(dir, &mut self.planner, &self.properties)
    }

    /// A copy of the engine to validate statements in before they run: it sees the same catalog,
    /// queries, topics and schemas, and whatever it creates, deletes, registers or produces stays in
    /// the copy.
    pub fn sandbox(&self) -> Engine {
        Engine {
            catalog: self.catalog.clone(),
            planner: self.planner.clone(),
            admin: Arc::new(SandboxAdmin::over(self.admin.clone())),
            queries: self.queries.clone(),
            next_query: self.next_query,
            properties: self.properties.clone(),
            volatile_state: self.volatile_state,
            registry: Arc::new(SandboxRegistry::over(self.registry.clone())),
            plugins: self.plugins.clone(),
            types: self.types.clone(),
            models: self.models.detached(),
            connectors: self.connectors.clone(),
            lookup_plans: Mutex::new(HashMap::new()),
        }
    }

    /// The functions loaded from plugins.
    pub fn plugin_functions(&self) -> &PluginFunctions {
        &self.plugins
    }

    /// Registers and looks up schemas in `registry` (by default one in memory).
    pub fn with_schema_registry(mut self, registry: Arc<dyn SchemaRegistry>) -> Self {
        self.registry = registry;
        self
    }

    /// The schema registry queries use.
    pub fn schema_registry(&self) -> &Arc<dyn SchemaRegistry> {
        &self.registry
    }

    /// Lets persistent queries keep state (aggregations) in memory only. Right for hosts whose
    /// queries do not outlive the process (the golden runner); a server must not, since its queries
    /// resume after a restart and in-memory state would be lost.
    pub fn with_volatile_state(mut self) -> Self {
        self.volatile_state = true;
        self
    }

    /// The types `CREATE TYPE` named: statements are parsed with them.
    pub fn types(&self) -> &Types {
        &self.types
    }

    /// The catalog of sources.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The planner (function registry).
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The cluster's topic administration.
    pub fn admin(&self) -> &Arc<dyn TopicAdmin> {
        &self.admin
    }

    /// The persistent queries, by id.
    pub fn queries(&self) -> &BTreeMap<String, PersistentQuery> {
        &self.queries
    }

    /// Looks a persistent query up by id, ignoring case.
    pub fn query(&self, id: &str) -> Option<&PersistentQuery> {
        self.queries.get(id).or_else(|| {
            self.queries
                .values()
                .find(|q| q.id.eq_ignore_ascii_case(id))
        })
    }

    /// Plans a transient query (push or pull) into a pipeline.
    pub fn plan_transient(&self, q: &QueryStatement) -> Result<Pipeline> {
        Pipeline::new(
            self.planner.plan_transient(&self.catalog, q)?,
            &self.registry,
        )
    }

    /// Plans a pull query (a `SELECT` without `EMIT`) over a table a persistent query materializes.
    pub fn plan_pull(&self, q: &QueryStatement, props: &Properties) -> Result<PullQuery> {
        let limit_enabled = props
            .get("ksql.query.pull.limit.clause.enabled")
            .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
        eddy_sql::pull::check(q, &self.catalog, limit_enabled)?;
        let mut q = q.clone();
        eddy_sql::pull::window_bound_texts(&mut q)?;
        let source = match eddy_sql::pull::source(&q, &self.catalog) {
            Some(source) => source.clone(),
            // Planning says what is wrong with the FROM, or finds what it names.
            None => self.plan_transient(&q)?.source().clone(),
        };
        let scans = props
            .get("ksql.query.pull.table.scan.enabled")
            .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
        let keys: Vec<(String, String)> = source
            .columns
            .iter()
            .filter(|c| c.role == ColumnRole::Key)
            .map(|c| (c.name.clone(), c.sql_type.to_string()))
            .collect();
        let table = self
            .queries
            .values()
            .find(|pq| pq.sink == source.name && pq.pipeline.is_stateful())
            .map(|pq| (pq.tables(), pq.sink_spec.clone()));
        // The shards read here, taken together with their pipelines: a pull query asks other servers
        // for exactly the rest, even if shards move meanwhile.
        let (held, table) = match table {
            Some(((held, tables), sink)) => (held, Some((tables, sink))),
            None => (Vec::new(), None),
        };
        // Keys are looked up in an aggregation's state, or in the store of a table over a topic.
        let stored = source.kind == SourceKind::Table && source.window.is_none();
        let lookup = match &table {
            Some(_) => self.key_lookup(&q, &source),
            None if stored => self.key_lookup(&q, &source),
            None => None,
        };
        // Lookups whose WHERE pins the keys and says nothing else need no filter: the plan of the
        // query without its WHERE serves every key, planned once.
        // (Only for constants of the keys' own types: others take the filter's coercions.)
        let key_names: Vec<String> = keys.iter().map(|(name, _)| name.clone()).collect();
        let schema = source.input_schema();
        let key_types: Vec<Option<&DataType>> = key_names
            .iter()
            .map(|k| schema.field_with_name(k).ok().map(|f| f.data_type()))
            .collect();
        let typed = |rows: &Vec<Vec<ScalarValue>>| {
            rows.iter().all(|row| {
                row.iter()
                    .zip(&key_types)
                    .all(|(v, t)| t.is_some_and(|t| v.data_type() == *t))
            })
        };
        let pipeline = match lookup
            .as_ref()
            .filter(|rows| typed(rows))
            .and_then(|_| eddy_sql::pull::without_key_pins(&q, &key_names))
        {
            Some(unfiltered) => self.lookup_plan(&unfiltered)?,
            None => self.plan_transient(&q)?,
        };
        if pipeline.plan.aggregate.is_some() {
            return Err(plan_err!(
                "Pull queries don't support GROUP BY clauses or aggregate functions: query the table an aggregation creates (CREATE TABLE ... AS SELECT ... GROUP BY ...), or add EMIT CHANGES for a push query."
            ));
        }
        eddy_sql::pull::check_key_lists(&q, &keys)?;
        if !scans && source.kind == SourceKind::Table {
            eddy_sql::pull::check_lookups(&q, &keys)?;
        }
        let mut query = PullQuery::new(pipeline, table);
        query.held_shards = held;
        Ok(match lookup {
            Some(keys) => query.with_keys(keys),
            None => query,
        })
    }

    /// The plan of a key lookup without its WHERE (see [`Engine::plan_pull`]), from the cache.
    fn lookup_plan(&self, unfiltered: &QueryStatement) -> Result<Pipeline> {
        /// Shapes of lookups kept at most; past that the cache starts again.
        const MAX_LOOKUP_PLANS: usize = 1024;
        let shape = unfiltered.query.to_string();
        let plans = || self.lookup_plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pipeline) = plans().get(&shape) {
            return Ok(pipeline.clone());
        }
        let pipeline = self.plan_transient(unfiltered)?;
        let mut plans = plans();
        if plans.len() >= MAX_LOOKUP_PLANS {
            plans.clear();
        }
        plans.insert(shape, pipeline.clone());
        Ok(pipeline)
    }

    /// Forgets the plans of key lookups: the catalog, the queries or the functions changed.
    fn forget_lookup_plans(&mut self) {
        self.lookup_plans
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The key rows a pull query over `source` (a table) looks up, when its WHERE pins every key
    /// column to constants; at most [`MAX_LOOKUPS`] of them.
    fn key_lookup(&self, q: &QueryStatement, source: &Source) -> Option<Vec<Vec<ScalarValue>>> {
        let keys: Vec<String> = source
            .columns
            .iter()
            .filter(|c| c.role == ColumnRole::Key)
            .map(|c| c.name.clone())
            .collect();
        let pinned = eddy_sql::pull::key_values(q, &keys)?;
        let mut rows: Vec<Vec<ScalarValue>> = vec![Vec::new()];
        for exprs in pinned {
            let values = self.planner.evaluate_constants(&exprs).ok()?;
            if rows.len() * values.len() > MAX_LOOKUPS {
                return None;
            }
            rows = rows
                .iter()
                .flat_map(|r| {
                    values.iter().map(move |v| {
                        let mut row = r.clone();
                        row.push(v.clone());
                        row
                    })
                })
                .collect();
        }
        Some(rows)
    }

    /// Executes one DDL/DML statement. `SELECT`, `PRINT`, `SHOW`, `DESCRIBE` and `SET` are answered by
    /// hosts, which read the catalog directly.
    pub fn execute(&mut self, stmt: &ParsedStatement, props: &Properties) -> Result<Outcome> {
        self.forget_lookup_plans();
        match &stmt.statement {
            Statement::CreateSource(c) if c.query.is_none() => {
                self.create_source(c, &stmt.text, props)
            }
            Statement::CreateSource(c) => self.create_as_select(c, &stmt.text, props),
            Statement::InsertSelect { target, query, .. } => {
                self.insert_select(target, query, &stmt.text, props)
            }
            Statement::InsertValues {
                target,
                columns,
                values,
            } => self.insert_values(target, columns, values),
            Statement::Drop {
                kind,
                name,
                if_exists,
                delete_topic,
            } => self.drop_source(*kind, name, *if_exists, *delete_topic),
            Statement::Terminate { query_id } => self.terminate(query_id.as_deref()),
            Statement::CreateType {
                name,
                sql_type,
                if_not_exists,
            } => self.create_type(name, sql_type, *if_not_exists),
            Statement::DropType { name, if_exists } => {
                let existed = self.types.remove(name).is_some();
                if !existed && !if_exists {
                    return Err(plan_err!("Type {name} does not exist."));
                }
                Ok(Outcome::TypeDropped {
                    name: name.clone(),
                    existed,
                })
            }
            Statement::Alter {
                kind,
                name,
                columns,
            } => self.alter(*kind, name, columns),
            Statement::CreateModel {
                name,
                version,
                folder,
            } => {
                let (card, onnx) = read_folder(std::path::Path::new(folder))?;
                self.register_model(name, *version, card, onnx)
            }
            Statement::AlterModel { name, alias, route } => {
                let key = name.to_ascii_lowercase();
                if let (Some(route), Some(model)) = (route, self.models.get(&key)) {
                    for v in route.versions().filter(|v| model.versions.contains_key(v)) {
                        self.check_model(&key, v)?;
                    }
                }
                let before = self.models.set_alias(name, alias, route.clone())?;
                Ok(Outcome::ModelAliased {
                    name: key,
                    alias: alias.to_ascii_lowercase(),
                    before,
                    route: route.clone(),
                })
            }
            Statement::DropModel {
                name,
                version,
                if_exists,
            } => self.drop_model(name, *version, *if_exists),
            Statement::CreateConnector {
                name,
                if_not_exists,
                properties,
            } => self.create_connector(name, *if_not_exists, properties, &stmt.text),
            Statement::DropConnector { name, if_exists } => {
                let existed = self.connectors.remove(name).is_some();
                if !existed && !if_exists {
                    return Err(plan_err!("Connector {name} does not exist."));
                }
                Ok(Outcome::ConnectorDropped {
                    name: name.clone(),
                    existed,
                })
            }
            Statement::ReloadFunctions => {
                let report = self
                    .plugins
                    .reload(&mut self.planner, &self.properties)
                    .ok_or_else(|| {
                        plan_err!(
                            "This server has no plugin directory to load functions from: start it with --plugin-dir <directory>."
                        )
                    })?;
                Ok(Outcome::FunctionsReloaded(report))
            }
            other => Err(not_supported!(
                "Statement type `{}' cannot be executed here",
                other.type_name()
            )),
        }
    }

    fn create_type(
        &mut self,
        name: &str,
        sql_type: &SqlType,
        if_not_exists: bool,
    ) -> Result<Outcome> {
        if let Some(existing) = self.types.get(name) {
            if !if_not_exists {
                return Err(plan_err!(
                    "Cannot register custom type '{name}' since it is already registered with type: {existing}"
                ));
            }
            return Ok(Outcome::TypeRegistered {
                name: name.to_string(),
                sql_type: existing.clone(),
                existed: true,
            });
        }
        if SqlType::simple(name).is_some() || ["ARRAY", "MAP", "STRUCT", "DECIMAL"].contains(&name)
        {
            return Err(plan_err!(
                "Cannot register custom type '{name}': it is the name of a built-in type"
            ));
        }
        self.types.insert(name.to_string(), sql_type.clone());
        Ok(Outcome::TypeRegistered {
            name: name.to_string(),
            sql_type: sql_type.clone(),
            existed: false,
        })
    }

    /// `CREATE SOURCE CONNECTOR`: checked, and its Kafka topic there (made when it says how many
    /// partitions).
    fn create_connector(
        &mut self,
        name: &str,
        if_not_exists: bool,
        props: &eddy_sql::statement::Properties,
        text: &str,
    ) -> Result<Outcome> {
        if self.connectors.contains_key(name) {
            if if_not_exists {
                return Ok(Outcome::ConnectorCreated {
                    name: name.to_string(),
                    existed: true,
                });
            }
            return Err(plan_err!("Connector {name} already exists."));
        }
        let connector = Connector::new(name, text, props)?;
        let topic = &connector.mqtt.kafka_topic;
        if self.admin.partitions(topic)?.is_none() {
            let Some(partitions) = connector.mqtt.partitions else {
                return Err(plan_err!(
                    "Topic '{topic}' does not exist: create it (a CREATE STREAM with PARTITIONS does) or give the connector 'kafka.topic.partitions'"
                ));
            };
            self.admin.create_topic(topic, partitions, 1)?;
        }
        self.connectors.insert(name.to_string(), connector);
        Ok(Outcome::ConnectorCreated {
            name: name.to_string(),
            existed: false,
        })
    }

    /// `DROP MODEL`: refused while a query runs a version it removes.
    fn drop_model(&mut self, name: &str, version: Option<u32>, if_exists: bool) -> Result<Outcome> {
        let key = name.to_ascii_lowercase();
        let Some(model) = self.models.get(&key) else {
            if if_exists {
                return Ok(Outcome::ModelDropped {
                    name: key,
                    versions: Vec::new(),
                });
            }
            return Err(self.models.require(&key).unwrap_err());
        };
        let removing = |v: u32| version.is_none_or(|n| n == v);
        let users: Vec<String> = self
            .queries
            .values()
            .filter(|q| {
                q.models.iter().any(|u| {
                    u.name == key
                        && match &u.version {
                            Pinned::Version(v) => removing(*v),
                            Pinned::Alias(a) => {
                                version.is_none()
                                    || model
                                        .aliases
                                        .get(a)
                                        .is_some_and(|r| r.versions().any(removing))
                            }
                        }
                })
            })
            .map(|q| q.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(plan_err!(
                "Cannot drop model '{key}'{}: queries use it ({}); terminate them first",
                version.map(|v| format!(" version {v}")).unwrap_or_default(),
                users.join(", ")
            ));
        }
        let versions = self.models.drop(&key, version)?;
        Ok(Outcome::ModelDropped {
            name: key,
            versions,
        })
    }

    /// Pins the query's references to catalog models (see `model_refs`): the query to plan, and the
    /// models it uses.
    fn pin_models(
        &self,
        query: &QueryStatement,
        props: &Properties,
    ) -> Result<(QueryStatement, Vec<ModelUse>)> {
        let mut query = query.clone();
        let plugins = &self.plugins;
        let uses = pin(&mut query.query, &self.models, &pins(props), |f| {
            plugins.takes_model(f)
        })?;
        Ok((query, uses))
    }

    /// Builds a persistent query writing `plan` into `sink` and keeps it.
    fn add_query(
        &mut self,
        id: String,
        text: &str,
        sink: &Source,
        plan: eddy_sql::planner::QueryPlan,
        props: &Properties,
        models: Vec<ModelUse>,
    ) -> Result<()> {
        let props = self.effective(props);
        let mut query = PersistentQuery::new(
            id.clone(),
            text,
            sink,
            plan,
            !self.volatile_state,
            &props,
            &self.registry,
        )?;
        query.models = models;
        self.queries.insert(id, query);
        Ok(())
    }

    /// The planner, with the function settings `props` give (collection limits).
    fn planner_for(&self, props: &Properties) -> Result<std::borrow::Cow<'_, Planner>> {
        let limit = |name: &str| -> Result<Option<usize>> {
            props
                .get(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            plan_err!("Invalid value {v} for property {name}: it must be a positive number")
                        })
                })
                .transpose()
        };
        let list = limit("ksql.functions.collect_list.limit")?;
        let set = limit("ksql.functions.collect_set.limit")?;
        Ok(if list.is_none() && set.is_none() {
            std::borrow::Cow::Borrowed(&self.planner)
        } else {
            std::borrow::Cow::Owned(self.planner.with_collection_limits(list, set))
        })
    }

    /// The server's properties overridden by a request's.
    fn effective(&self, props: &Properties) -> Properties {
        let mut all = self.properties.clone();
        all.extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    fn check_new_name(&self, c: &CreateSource) -> Result<Option<Outcome>> {
        let existing_source = self.catalog.get(&c.name).is_some_and(|s| s.is_read_only);
        if c.or_replace && (c.is_source || existing_source) {
            return Err(plan_err!(
                "Cannot add {} '{}': CREATE OR REPLACE is not supported on source {}s.",
                c.kind.as_str().to_lowercase(),
                c.name,
                c.kind.as_str().to_lowercase()
            ));
        }
        if let Some(existing) = self.catalog.get(&c.name) {
            if c.if_not_exists {
                return Ok(Some(Outcome::SourceExists {
                    kind: c.kind,
                    name: c.name.clone(),
                }));
            }
            if !c.or_replace {
                return Err(plan_err!(
                    "Cannot add {} '{}': A {} with the same name already exists",
                    c.kind.as_str().to_lowercase(),
                    c.name,
                    existing.kind.as_str().to_lowercase()
                ));
            }
            if existing.kind != c.kind {
                return Err(plan_err!(
                    "Cannot add {} '{}': A {} with the same name already exists",
                    c.kind.as_str().to_lowercase(),
                    c.name,
                    existing.kind.as_str().to_lowercase()
                ));
            }
        }
        Ok(None)
    }

    fn create_source(
        &mut self,
        c: &CreateSource,
        text: &str,
        props: &Properties,
    ) -> Result<Outcome> {
        if let Some(done) = self.check_new_name(c)? {
            return Ok(done);
        }
        if c.kind == SourceKind::Table
            && !c.columns.is_empty()
            && c.columns.iter().all(|col| col.role != ColumnRole::Key)
        {
            return Err(plan_err!(
                "Tables require a PRIMARY KEY. Please define the PRIMARY KEY."
            ));
        }
        // The properties are checked first, as ksqlDB does.
        let (key_format, value_format) = Source::formats(c, &SourceDefaults::default())?;
        let (columns, unwrapped) = self.columns_of(c, key_format, value_format)?;
        let mut source = Source::from_create(c, columns, &SourceDefaults::default(), text)?;
        if unwrapped {
            source.value_format.wrap_single_value = false;
        }
        self.register_declared_schemas(c, &source)?;
        match self.admin.partitions(&source.topic)? {
            Some(existing) => {
                if c.properties.contains_key("PARTITIONS") && existing != source.partitions {
                    return Err(plan_err!(
                        "A Kafka topic with the name '{}' already exists, with different partition/replica configuration than required. KSQL expects {} partitions (topic has {}), 1 replication factor (topic has 1).",
                        source.topic,
                        source.partitions,
                        existing
                    ));
                }
                source.partitions = existing;
            }
            None if source.partitions > 0 => self.admin.create_topic(
                &source.topic,
                source.partitions,
                topic_replicas(c, source.replicas, props)?,
            )?,
            None => {
                return Err(plan_err!(
                    "Topic '{}' does not exist. If you want to create a new topic for the {} please re-run the statement providing the required 'PARTITIONS' configuration in the WITH clause (and optionally 'REPLICAS'). For example: CREATE {} {} (...) WITH (KAFKA_TOPIC='{}', PARTITIONS=2, REPLICAS=1, FORMAT='{}');",
                    source.topic,
                    c.kind.as_str().to_lowercase(),
                    c.kind.as_str(),
                    c.name,
                    source.topic,
                    source.value_format
                ));
            }
        }
        let (kind, name) = (source.kind, source.name.clone());
        self.catalog.insert(source);
        Ok(Outcome::SourceCreated { kind, name })
    }

    /// The columns a `CREATE` declares, with those it leaves out inferred from the schemas registered
    /// for its topic; and whether the inferred value is a single unwrapped column.
    fn columns_of(
        &self,
        c: &CreateSource,
        key_format: Format,
        value_format: Format,
    ) -> Result<(Vec<Column>, bool)> {
        let declared: Vec<Column> = c.columns.iter().map(Column::from).collect();
        let Some(topic) = c.properties.get("KAFKA_TOPIC").map(|t| t.text()) else {
            return Ok((declared, false));
        };
        let infer = |role: ColumnRole, format: Format| -> Result<Option<Inferred>> {
            if declared.iter().any(|col| col.role == role) {
                return Ok(None);
            }
            infer_part(self.registry.as_ref(), c, &topic, format, role)
        };
        let keys = infer(ColumnRole::Key, key_format)?;
        let values = infer(ColumnRole::Value, value_format)?;
        if declared.is_empty() && values.is_none() {
            if value_format.kind.uses_registry() {
                return Err(plan_err!(
                    "Schema for message values on topic '{topic}' does not exist in the Schema Registry.\nSubject: {}\nPossible causes include:\n- The topic itself does not exist\n\t-> Use SHOW TOPICS; to check\n- Messages on the topic are not serialized using a format Schema Registry supports\n\t-> Use PRINT '{topic}' FROM BEGINNING; to verify\n- Messages on the topic have not been serialized using a Confluent Schema Registry supported serializer\n\t-> See https://docs.confluent.io/current/schema-registry/docs/serializer-formatter.html\n- The schema is registered on a different instance of the Schema Registry\n\t-> Use the REST API to list available subjects\thttps://docs.confluent.io/current/schema-registry/docs/api.html#get--subjects",
                    subject(&topic, false)
                ));
            }
            return Err(plan_err!(
                "The statement does not define any columns, and its value format {} has no schema to infer them from: list the columns",
                value_format.kind.name()
            ));
        }
        let unwrapped = values.as_ref().is_some_and(|v| v.unwrapped);
        let mut columns: Vec<Column> = keys.map(|k| k.columns).unwrap_or_default();
        columns.extend(declared);
        columns.extend(values.map(|v| v.columns).unwrap_or_default());
        Ok((columns, unwrapped))
    }

    /// Registers the schemas of a source's declared key and value columns under its topic's
    /// subjects, where a schema-registry format has none there yet.
    fn register_declared_schemas(&self, c: &CreateSource, source: &Source) -> Result<()> {
        for (role, format) in [
            (ColumnRole::Key, source.key_format),
            (ColumnRole::Value, source.value_format),
        ] {
            let key = role == ColumnRole::Key;
            let subject = subject(&source.topic, key);
            let declared = c.columns.iter().any(|col| col.role == role);
            if !format.kind.uses_registry()
                || !declared
                || self.registry.latest(&subject)?.is_some()
            {
                continue;
            }
            let columns = source
                .columns
                .iter()
                .filter(|col| col.role == role)
                .map(|col| (col.name.clone(), col.sql_type.clone()))
                .collect();
            PartEncoder::new(format, columns).with_registry(
                self.registry.as_ref(),
                &subject,
                key,
            )?;
        }
        Ok(())
    }

    fn create_as_select(
        &mut self,
        c: &CreateSource,
        text: &str,
        props: &Properties,
    ) -> Result<Outcome> {
        if let Some(done) = self.check_new_name(c)? {
            return Ok(done);
        }
        let query = c.query.as_ref().ok_or_else(|| plan_err!("missing query"))?;
        if query.query.limit_clause.is_some() {
            return Err(plan_err!(
                "CREATE {} AS SELECT statements don't support LIMIT clause.",
                c.kind.as_str()
            ));
        }
        let (query, models) = self.pin_models(query, props)?;
        let plan = self
            .planner_for(&self.effective(props))?
            .plan_query(&self.catalog, &query)?;
        // An aggregation produces a table; otherwise a query produces what it reads.
        let produces = if plan.aggregate.is_some() {
            SourceKind::Table
        } else {
            plan.source.kind
        };
        if produces != c.kind {
            let (kind, statement) = match produces {
                SourceKind::Stream => ("STREAM", "CREATE STREAM AS SELECT"),
                SourceKind::Table => ("TABLE", "CREATE TABLE AS SELECT"),
            };
            return Err(plan_err!(
                "Invalid result type. Your SELECT query produces a {kind}. Please use {statement} statement instead."
            ));
        }
        // ksqlDB checks the sink's TIMESTAMP column first, then the projection, then the formats.
        timestamp_column(&c.properties, &plan.columns)?;
        plan.check_persistent_projection(&c.name)?;
        if let Some(join) = &plan.join {
            crate::join::partitions(join, self.admin.as_ref())?;
        }
        let input = plan.source.clone();
        let prefix = props
            .get("ksql.output.topic.name.prefix")
            .cloned()
            .unwrap_or_default();
        let defaults = SourceDefaults {
            topic: Some(format!("{prefix}{}", c.name)),
            // A source without a key gives its sink the default key format once the query adds one.
            key_format: Some(match input.key_format.kind {
                FormatKind::None => props
                    .get("ksql.persistence.default.format.key")
                    .map(|f| FormatKind::parse(f))
                    .transpose()?
                    .unwrap_or(FormatKind::Kafka),
                kind => kind,
            }),
            value_format: Some(input.value_format.kind),
            wrap_single_values: None,
            partitions: Some(input.partitions.max(DEFAULT_PARTITIONS)),
        };
        let mut sink = Source::from_create(c, plan.columns.clone(), &defaults, text)?;
        inherit_format_options(&mut sink, &input, c);
        sink.window = plan.window;
        match self.admin.partitions(&sink.topic)? {
            Some(existing) => sink.partitions = existing,
            None => self.admin.create_topic(
                &sink.topic,
                sink.partitions,
                topic_replicas(c, sink.replicas, props)?,
            )?,
        }
        let replaced = self
            .queries
            .values()
            .find(|q| q.sink == c.name)
            .map(|q| q.id.clone());
        let id = match replaced {
            Some(id) => id,
            None => self.next_id(&match c.kind {
                SourceKind::Stream => format!("CSAS_{}", c.name),
                SourceKind::Table => format!("CTAS_{}", c.name),
            }),
        };
        self.add_query(id.clone(), text, &sink, plan, props, models)?;
        self.catalog.insert(sink);
        Ok(Outcome::QueryCreated {
            query_id: id,
            kind: Some(c.kind),
            sink: c.name.clone(),
        })
    }

    fn insert_select(
        &mut self,
        target: &str,
        q: &QueryStatement,
        text: &str,
        props: &Properties,
    ) -> Result<Outcome> {
        let sink = self.catalog.require(target)?.clone();
        if sink.is_read_only {
            return Err(plan_err!(
                "Cannot insert into read-only {}: {target}",
                sink.kind.as_str().to_lowercase()
            ));
        }
        if sink.kind != SourceKind::Stream {
            return Err(plan_err!(
                "INSERT INTO can only be used to insert into a stream. {target} is a table."
            ));
        }
        let (q, models) = self.pin_models(q, props)?;
        let plan = self.planner.plan_query(&self.catalog, &q)?;
        if plan.aggregate.is_some() {
            return Err(plan_err!(
                "INSERT INTO needs a query that produces a stream: an aggregation produces a TABLE."
            ));
        }
        let same = plan.columns.len() == sink.columns.len()
            && plan.columns.iter().all(|c| {
                sink.column(&c.name)
                    .is_some_and(|s| s.sql_type == c.sql_type && s.role == c.role)
            });
        if !same {
            return Err(plan_err!(
                "Incompatible schema between results and sink.\nResult schema is {}\nSink schema is {}",
                schema_text(&plan.columns),
                schema_text(&sink.columns)
            ));
        }
        let id = self.next_id("INSERTQUERY");
        self.add_query(id.clone(), text, &sink, plan, &Properties::new(), models)?;
        Ok(Outcome::QueryCreated {
            query_id: id,
            kind: None,
            sink: target.to_string(),
        })
    }

    fn next_id(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}_{}", self.next_query);
        self.next_query += 1;
        id
    }

    /// Encodes the row of an `INSERT INTO ... VALUES` into a record for the target's topic.
    pub fn insert_record(
        &self,
        target: &str,
        columns: &[String],
        values: &[sqlparser_expr::Expr],
    ) -> Result<(String, Record)> {
        let source = self.catalog.require(target)?;
        let names: Vec<String> = if columns.is_empty() {
            source
                .columns
                .iter()
                .filter(|c| !c.role.is_header())
                .map(|c| c.name.clone())
                .collect()
        } else {
            columns.to_vec()
        };
        if let Some(header) = names
            .iter()
            .filter_map(|n| source.column(n))
            .find(|c| c.role.is_header())
        {
            return Err(plan_err!(
                "Cannot insert into HEADER columns: `{}` is read from the records' headers, which INSERT INTO ... VALUES does not write.",
                header.name
            ));
        }
        if !columns.is_empty() && columns.len() != values.len() {
            return Err(plan_err!(
                "Failed to prepare statement: Expected number columns and values to match: {}, {}",
                columns.len(),
                values.len()
            ));
        }
        if let Some(name) = names
            .iter()
            .find(|n| n.as_str() == "ROWPARTITION" || n.as_str() == "ROWOFFSET")
        {
            return Err(plan_err!("Inserting into column `{name}` is not allowed."));
        }
        // A value naming a column of some source: VALUES takes constant expressions only.
        if let Some(qualifier) = values.iter().find_map(|v| match v {
            sqlparser_expr::Expr::CompoundIdentifier(parts) => parts.first(),
            _ => None,
        }) {
            return Err(plan_err!(
                "Failed to prepare statement: '{}' is not a valid stream/table name or alias.",
                qualifier.value.to_uppercase()
            ));
        }
        if names.len() != values.len() {
            return Err(plan_err!(
                "Expected a value for each column. Expected Columns: [{}]. Got [{}]",
                names.join(", "),
                values
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let scalars = self.planner.evaluate_constants(values)?;
        let mut timestamp = None;
        let mut by_name = BTreeMap::new();
        for (name, value) in names.iter().zip(scalars) {
            if name == ROWTIME {
                let v = value
                    .cast_to(&datafusion::arrow::datatypes::DataType::Int64)
                    .map_err(|e| plan_err!("ROWTIME must be a BIGINT: {e}"))?;
                if let datafusion::common::ScalarValue::Int64(Some(t)) = v {
                    timestamp = Some(t);
                }
                continue;
            }
            let col = source
                .column(name)
                .ok_or_else(|| plan_err!("Column name {name} does not exist."))?;
            let v = value.cast_to(&col.sql_type.to_arrow()).map_err(|_| {
                plan_err!(
                    "Expected type {} for field {} but got {}",
                    col.sql_type,
                    name,
                    value
                )
            })?;
            by_name.insert(name.clone(), v);
        }
        self.encode_row(source, by_name, timestamp)
    }

    /// The record one JSON row of `/inserts-stream` makes for `target`: keys are column names (case
    /// does not matter), values are read as the JSON format reads them; `ROWTIME` sets the time.
    pub fn insert_json_row(
        &self,
        target: &str,
        row: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(String, Record)> {
        let source = self.catalog.require(target)?;
        let mut timestamp = None;
        let mut by_name = BTreeMap::new();
        for (key, value) in row {
            if key.eq_ignore_ascii_case(ROWTIME) {
                timestamp = Some(
                    value
                        .as_i64()
                        .ok_or_else(|| plan_err!("ROWTIME must be a BIGINT, got {value}"))?,
                );
                continue;
            }
            let col = source
                .column(key)
                .or_else(|| {
                    source
                        .columns
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(key))
                })
                .ok_or_else(|| plan_err!("Column name {key} does not exist."))?;
            let mut builder = ColumnBuilder::new(&col.sql_type, 1);
            builder.push(Cell::from(value)).map_err(|e| {
                plan_err!(
                    "Column `{}` is {} and cannot take {value}: {e}",
                    col.name,
                    col.sql_type
                )
            })?;
            let array = builder.finish().map_err(|e| exec_err!("{e}"))?;
            let scalar = datafusion::common::ScalarValue::try_from_array(&array, 0)
                .map_err(|e| exec_err!("{e}"))?;
            by_name.insert(col.name.clone(), scalar);
        }
        self.encode_row(source, by_name, timestamp)
    }

    /// Encodes one row (values by column name; missing ones NULL) into a record for `source`.
    fn encode_row(
        &self,
        source: &Source,
        mut by_name: BTreeMap<String, datafusion::common::ScalarValue>,
        timestamp: Option<i64>,
    ) -> Result<(String, Record)> {
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for c in &source.columns {
            let v = by_name.remove(&c.name).unwrap_or(
                datafusion::common::ScalarValue::try_from(c.sql_type.to_arrow())
                    .map_err(|e| exec_err!("{e}"))?,
            );
            fields.push(Field::new(&c.name, c.sql_type.to_arrow(), true));
            arrays.push(v.to_array().map_err(|e| exec_err!("{e}"))?);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| exec_err!("{e}"))?;
        let encoder = SinkEncoder::new(
            &source.columns,
            source.key_format,
            source.value_format,
            self.registry.as_ref(),
            &source.topic,
        )?;
        let (key, value) = encoder
            .encode(&batch, None, None)?
            .pop()
            .ok_or_else(|| exec_err!("nothing encoded"))?;
        let partition = key
            .as_deref()
            .map(|k| partition_for(k, source.partitions))
            .unwrap_or(0);
        let timestamp = timestamp.unwrap_or_else(now_ms);
        Ok((
            source.topic.clone(),
            Record {
                key,
                value,
                timestamp,
                partition,
                offset: -1,
                headers: Vec::new(),
            },
        ))
    }

    /// Adds value columns to a source made by `CREATE STREAM|TABLE`; queries already running keep the
    /// columns they were planned with.
    fn alter(&mut self, kind: SourceKind, name: &str, columns: &[ColumnDef]) -> Result<Outcome> {
        let source = self.catalog.require(name)?.clone();
        let what = kind.as_str().to_lowercase();
        if source.is_read_only {
            return Err(plan_err!(
                "Cannot alter {what} '{name}': ALTER operations are not supported on source {what}s."
            ));
        }
        if source.kind != kind {
            return Err(plan_err!(
                "Incompatible data source type is {}, but statement was ALTER {}",
                source.kind.as_str(),
                kind.as_str()
            ));
        }
        if self.queries.values().any(|q| q.sink == name) {
            return Err(plan_err!(
                "ALTER command is not supported for CREATE ... AS statements."
            ));
        }
        let mut altered = source.as_ref().clone();
        for c in columns {
            if altered.column(&c.name).is_some() {
                return Err(plan_err!(
                    "Cannot add column `{}` to schema. A column with the same name already exists.",
                    c.name
                ));
            }
            altered.columns.push(Column::from(c));
        }
        self.catalog.insert(altered);
        Ok(Outcome::Altered {
            kind,
            name: name.to_string(),
        })
    }

    fn insert_values(
        &mut self,
        target: &str,
        columns: &[String],
        values: &[sqlparser_expr::Expr],
    ) -> Result<Outcome> {
        let source = self.catalog.require(target)?;
        if source.is_read_only {
            return Err(plan_err!(
                "Cannot insert values into read-only {}: {}",
                source.kind.as_str().to_lowercase(),
                target
            ));
        }
        let (topic, record) = self.insert_record(target, columns, values)?;
        self.admin.produce(&topic, vec![record])?;
        Ok(Outcome::Inserted)
    }

    fn drop_source(
        &mut self,
        kind: SourceKind,
        name: &str,
        if_exists: bool,
        delete_topic: bool,
    ) -> Result<Outcome> {
        let Some(source) = self.catalog.get(name).cloned() else {
            if if_exists {
                return Ok(Outcome::DropSkipped {
                    kind,
                    name: name.to_string(),
                });
            }
            let kind = match kind {
                SourceKind::Stream => "Stream",
                SourceKind::Table => "Table",
            };
            return Err(plan_err!("{kind} {name} does not exist."));
        };
        if source.kind != kind {
            return Err(plan_err!(
                "Incompatible data source type is {}, but statement was DROP {}",
                source.kind.as_str(),
                kind.as_str()
            ));
        }
        if delete_topic && source.is_read_only {
            return Err(plan_err!(
                "Cannot delete topic for read-only source: {name}"
            ));
        }
        let readers: Vec<&str> = self
            .queries
            .values()
            .filter(|q| q.source_names().iter().any(|s| s == name) && q.sink != name)
            .map(|q| q.sink.as_str())
            .collect();
        if !readers.is_empty() {
            return Err(plan_err!(
                "Cannot drop {name}.\nThe following streams and/or tables read from this source: [{}].\nYou need to drop them before dropping {name}.",
                readers.join(", ")
            ));
        }
        let terminated: Vec<String> = self
            .queries
            .values()
            .filter(|q| q.sink == name)
            .map(|q| q.id.clone())
            .collect();
        for id in &terminated {
            self.queries.remove(id);
        }
        self.catalog.remove(name);
        if delete_topic {
            self.admin.delete_topic(&source.topic)?;
        }
        Ok(Outcome::Dropped {
            kind,
            name: name.to_string(),
            topic: source.topic.clone(),
            terminated,
        })
    }

    fn terminate(&mut self, id: Option<&str>) -> Result<Outcome> {
        let ids: Vec<String> = match id {
            None => self.queries.keys().cloned().collect(),
            Some(id) => match self.query(id) {
                Some(q) => vec![q.id.clone()],
                None => return Err(plan_err!("Unknown queryId: {id}")),
            },
        };
        for id in &ids {
            self.queries.remove(id);
        }
        Ok(Outcome::Terminated { query_ids: ids })
    }
}

/// A sink of `CREATE ... AS SELECT` keeps its source's delimiter unless told otherwise.
fn inherit_format_options(sink: &mut Source, input: &Source, c: &CreateSource) {
    let props = &c.properties;
    if !["VALUE_FORMAT", "FORMAT", "VALUE_DELIMITER"]
        .iter()
        .any(|p| props.contains_key(*p))
    {
        sink.value_format.delimiter = input.value_format.delimiter;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// sqlparser's expression type, as used in parsed statements.
pub mod sqlparser_expr {
    pub use eddy_sql::sqlparser::ast::Expr;
}

/// The replication factor of a topic a statement creates: its `REPLICAS`, or else the statement's
/// `ksql.sink.replicas` (ksqlDB's default for the topics it creates), or 1.
fn topic_replicas(c: &CreateSource, replicas: i16, props: &Properties) -> Result<i16> {
    if c.properties.contains_key("REPLICAS") {
        return Ok(replicas);
    }
    match props.get("ksql.sink.replicas") {
        None => Ok(replicas),
        Some(v) => v
            .trim()
            .parse::<i16>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                plan_err!(
                    "Invalid value for ksql.sink.replicas: {v} (a replication factor, 1 or more)"
                )
            }),
    }
}
