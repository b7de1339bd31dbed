//! Server configuration: command-line flags and `EDDY_*` environment variables (clap), over an
//! optional properties or TOML file — ksqlDB's `ksql-server.properties` as it is: every key in it
//! is the server's own setting, a property statements may set (the file gives its default), a
//! plugin's (`ksql.functions.<name>.<key>`) or a Kafka client setting; any other is refused with
//! the closest known name (see `eddy_server::settings`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use eddy_kafka::{ClientSettings, Transactions};
use eddy_runtime::properties::{Effect, Properties};
use eddy_server::log_format::LogFormat;
use eddy_server::schema_registry::RegistryAccess;
use eddy_server::settings::{self, Setting};
use eddy_server::{access, peer_client, tls_listener};

/// Eddy's streaming SQL server.
#[derive(Debug, Clone, Parser)]
#[command(name = "eddy-server", version, about)]
pub struct Args {
    /// Address to serve the REST API on: `host:port` or `http://host:port`, or `https://host:port`
    /// with `eddy.rest.ssl.certificate.location` and `eddy.rest.ssl.key.location` in the config file.
    #[arg(long, env = "EDDY_LISTEN", default_value = "0.0.0.0:8088")]
    pub listen: String,
    /// Kafka bootstrap servers. Without them the server starts and supervises a private local broker.
    #[arg(long, env = "EDDY_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Directory for the local broker's data (without `--bootstrap-servers`); the server's own state
    /// is in Kafka, and with a cluster given nothing is written here.
    #[arg(long, env = "EDDY_DATA_DIR", default_value = "./eddy-data")]
    pub data_dir: PathBuf,
    /// Service id: servers with the same id share a catalog (command topic) and queries.
    #[arg(long, env = "EDDY_SERVICE_ID", default_value = "default_")]
    pub service_id: String,
    /// The URL other servers sharing the service id reach this one at (ksqlDB's
    /// `ksql.advertised.listener`); by default the listen address (127.0.0.1 when it listens on all).
    #[arg(long, env = "EDDY_ADVERTISED_URL")]
    pub advertised_url: Option<String>,
    /// URL of a Confluent-compatible Schema Registry for AVRO, PROTOBUF and JSON_SR. Without one the
    /// server keeps schemas itself (in its command log) and serves the registry API on its own port.
    #[arg(long, env = "EDDY_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// Directory of UDF plugins (shared libraries) loaded at start and by `RELOAD FUNCTIONS`.
    #[arg(long, env = "EDDY_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Most push queries (and PRINTs) running at once on this server (ksqlDB's
    /// `ksql.max.push.queries`); more are refused with 429.
    #[arg(long, env = "EDDY_MAX_PUSH_QUERIES", default_value_t = 100)]
    pub max_push_queries: usize,
    /// `at_least_once` (the default) or `exactly_once_v2`: the delivery guarantee of persistent
    /// queries that do not set `processing.guarantee` themselves (ksqlDB's setting).
    #[arg(
        long,
        env = "EDDY_PROCESSING_GUARANTEE",
        default_value = "at_least_once"
    )]
    pub processing_guarantee: String,
    /// How exactly-once output is made: `auto` (the default) uses Kafka transactions when the
    /// broker has them and Eddy's own exactly-once sink otherwise; `on` requires transactions;
    /// `off` always uses Eddy's own sink.
    #[arg(long, env = "EDDY_TRANSACTIONS", default_value = "auto")]
    pub transactions: Transactions,
    /// Processing-log entries of skipped records hold the record's bytes (ksqlDB's
    /// `ksql.logging.processing.rows.include`; off by default: rows may hold personal data).
    #[arg(long, env = "EDDY_PROCESSING_LOG_ROWS")]
    pub processing_log_rows: bool,
    /// A properties (`key=value`, ksqlDB's `ksql-server.properties`) or TOML file: the settings
    /// above by their ksqlDB names, properties statements run with, Kafka client settings
    /// (`security.protocol`, `sasl.*`, `ssl.*`, `ksql.streams.producer.*`, ...), plugins'
    /// `ksql.functions.<name>.<key>` (docs/configuration.md lists them all).
    #[arg(long, env = "EDDY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log lines as text, or as JSON objects (with the query id of a query's lines as a field).
    #[arg(
        long,
        env = "EDDY_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub tool: Option<Tool>,
}

/// Helpers for setting the server up; the server itself runs without one.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Tool {
    /// Prints the Argon2 hash of a password (read from the terminal without echo, or from stdin)
    /// for a line `name: <hash>, role ...` of `eddy.authentication.credentials.file`.
    HashPassword,
    /// Prints the `sha256:` digest of an API token (read from the terminal or stdin) for a line
    /// `name: <digest>, role ...` of `eddy.authentication.tokens.file`.
    HashToken,
}

/// The server's configuration: its flags, the properties statements run with unless they set
/// them, and how it reaches the Kafka cluster.
#[derive(Debug)]
pub struct Config {
    pub args: Args,
    /// From the configuration file: properties statements may set (their server defaults) and
    /// plugins' `ksql.functions.<name>.<key>` settings.
    pub properties: Properties,
    /// Kafka client settings.
    pub clients: ClientSettings,
    /// `ksql.internal.topic.replicas`.
    pub internal_replicas: i16,
    /// `ksql.streams.replication.factor`.
    pub state_replicas: i16,
    /// How the Schema Registry is reached (`ksql.schema.registry.*`).
    pub registry: RegistryAccess,
    /// `eddy.metrics.per.record`: queries count the bytes they read and observe their latency.
    pub per_record_metrics: bool,
    /// What the configuration sets that has no effect, for the log once it is started.
    pub warnings: Vec<String>,
    /// The REST API's HTTPS and authentication settings (`access::KEYS`, `eddy.rest.ssl.*`), by name.
    pub security: BTreeMap<&'static str, String>,
}

/// Reads the flags and environment (clap), then the configuration file under them: a flag or
/// environment variable wins over the file.
pub fn load() -> anyhow::Result<Config> {
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches)?;
    let mut config = Config {
        args: args.clone(),
        properties: Properties::new(),
        clients: ClientSettings::default(),
        internal_replicas: 1,
        state_replicas: 1,
        registry: RegistryAccess::default(),
        security: BTreeMap::new(),
        warnings: Vec::new(),
        per_record_metrics: true,
    };
    if args.tool.is_some() {
        return Ok(config);
    }
    // The file's settings, then those of `KSQL_*` variables (ksqlDB's Docker convention), which win.
    let mut entries: Vec<(String, String, String)> = Vec::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let from = path.display().to_string();
        entries.extend(
            parse(&text)
                .with_context(|| format!("in {from}"))?
                .into_iter()
                .map(|(k, v)| (k, v, from.clone())),
        );
    }
    entries.extend(
        // (`vars` would panic on a variable that is not Unicode: those are not properties.)
        ksql_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
        .into_iter()
        .map(|(variable, key, value)| (key, value, format!("the environment ({variable})"))),
    );
    if entries.is_empty() {
        return Ok(config);
    }
    // Whether the file may set an argument: neither a flag nor the environment gave it.
    let from_file = |id: &str| {
        matches!(
            matches.value_source(id),
            None | Some(ValueSource::DefaultValue)
        )
    };
    let mut clients: Vec<(&str, &str)> = Vec::new();
    for (key, value, source) in &entries {
        let whence = || format!("{key} in {source}");
        let setting = settings::classify(key)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(whence)?;
        match setting {
            Setting::Server(s) => {
                let number = |what: &str| -> anyhow::Result<i64> {
                    value
                        .trim()
                        .parse()
                        .with_context(|| format!("{key}: '{value}' is not {what}"))
                };
                match s.name() {
                    "listeners" if from_file("listen") => {
                        let first = value.split(',').next().unwrap_or_default().trim();
                        args.listen = first.to_string()
                    }
                    "bootstrap.servers" if from_file("bootstrap_servers") => {
                        args.bootstrap_servers = Some(value.clone())
                    }
                    "ksql.service.id" if from_file("service_id") => args.service_id = value.clone(),
                    "ksql.schema.registry.url" if from_file("schema_registry_url") => {
                        args.schema_registry_url = Some(value.clone())
                    }
                    "ksql.advertised.listener" if from_file("advertised_url") => {
                        args.advertised_url = Some(value.clone())
                    }
                    "ksql.extension.dir" if from_file("plugin_dir") => {
                        args.plugin_dir = Some(PathBuf::from(value))
                    }
                    "ksql.max.push.queries" if from_file("max_push_queries") => {
                        args.max_push_queries = number("a number")? as usize
                    }
                    "ksql.logging.processing.rows.include" if from_file("processing_log_rows") => {
                        args.processing_log_rows = value
                            .trim()
                            .parse()
                            .with_context(|| format!("{key}: '{value}' is not true or false"))?
                    }
                    "eddy.data.dir" if from_file("data_dir") => {
                        args.data_dir = PathBuf::from(value)
                    }
                    "eddy.transactions" if from_file("transactions") => {
                        args.transactions = value.parse()?
                    }
                    "eddy.metrics.per.record" => {
                        config.per_record_metrics = value
                            .trim()
                            .parse()
                            .with_context(|| format!("{key}: '{value}' is not true or false"))?
                    }
                    "eddy.log.format" if from_file("log_format") => {
                        args.log_format = value.parse().map_err(anyhow::Error::msg)?
                    }
                    "ksql.schema.registry.basic.auth.credentials.source"
                        if !value.trim().eq_ignore_ascii_case("USER_INFO") =>
                    {
                        bail!(
                            "{key}: only USER_INFO (ksql.schema.registry.basic.auth.user.info) is supported, not '{value}'"
                        )
                    }
                    "ksql.schema.registry.basic.auth.user.info" => {
                        config.registry.user_info = Some(value.trim().to_string())
                    }
                    "ksql.schema.registry.ssl.truststore.location" => {
                        let pem = std::fs::read(value.trim())
                            .with_context(|| format!("{key}: cannot read {value}"))?;
                        config.registry.ca_pem = Some(pem)
                    }
                    "ksql.schema.registry.ssl.truststore.type"
                        if !value.trim().eq_ignore_ascii_case("PEM") =>
                    {
                        bail!(
                            "{key}: Eddy reads CA certificates from PEM files, not {value} truststores: export them with `keytool -exportcert -rfc` and set {key}=PEM"
                        )
                    }
                    "ksql.internal.topic.replicas" => {
                        config.internal_replicas = replicas(number("a replication factor")?, key)?
                    }
                    "ksql.streams.replication.factor" => {
                        config.state_replicas = replicas(number("a replication factor")?, key)?
                    }
                    name if is_security(name) => {
                        config.security.insert(name, value.clone());
                    }
                    // Given by a flag or the environment, which win.
                    _ => {}
                }
            }
            Setting::Query(p) => {
                if let Effect::Ignored(why) = p.effect {
                    config
                        .warnings
                        .push(format!("{key} has no effect in Eddy: {why}"));
                }
                if p.name == "processing.guarantee" && from_file("processing_guarantee") {
                    args.processing_guarantee = value.clone();
                }
                config.properties.insert(key.clone(), value.clone());
            }
            Setting::Function => {
                config.properties.insert(key.clone(), value.clone());
            }
            Setting::Client(..) => {
                // The cluster's address is the server's own setting; everything else reaches
                // every client.
                clients.push((key, value));
            }
        }
    }
    config.clients = ClientSettings::from_properties(clients.iter().copied())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("in the Kafka client settings")?;
    for (key, why) in config.clients.ignored() {
        config.warnings.push(format!(
            "{key} has no effect with Eddy's Kafka clients: {why}"
        ));
    }
    config.args = args;
    Ok(config)
}

/// ksqlDB's Docker convention: a `KSQL_` variable sets the property its name spells, upper-cased
/// with `.` as `_`, `_` as `__` and `-` as `___` (`KSQL_KSQL_SERVICE_ID` is `ksql.service.id`); the
/// JVM's variables (`*_OPTS`, `KSQL_CLASSPATH`) are not properties. Returns (variable, key, value).
fn ksql_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String, String)> {
    vars.filter_map(|(variable, value)| {
        let name = variable.strip_prefix("KSQL_")?;
        if name.is_empty() || name.ends_with("_OPTS") || name == "OPTS" || name == "CLASSPATH" {
            return None;
        }
        let key = name
            .to_ascii_lowercase()
            .replace("___", "\u{1}")
            .replace("__", "\u{2}")
            .replace('_', ".")
            .replace('\u{1}', "-")
            .replace('\u{2}', "_");
        Some((variable, key, value))
    })
    .collect()
}

/// Whether a server setting is one of the REST API's security settings.
fn is_security(name: &str) -> bool {
    access::KEYS.contains(&name)
        || [
            tls_listener::CERTIFICATE_LOCATION,
            tls_listener::KEY_LOCATION,
            peer_client::CA_LOCATION,
        ]
        .contains(&name)
}

/// A replication factor: 1 or more (Kafka's limit is 32767).
fn replicas(n: i64, key: &str) -> anyhow::Result<i16> {
    i16::try_from(n)
        .ok()
        .filter(|n| *n >= 1)
        .with_context(|| format!("{key}: {n} is not a replication factor (1 or more)"))
}

/// Reads `key=value` lines, or TOML when the file has TOML syntax.
fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    if let Ok(table) = text.parse::<toml::Table>() {
        return Ok(table
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect());
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            bail!("line {}: expected key=value", n + 1);
        };
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_toml_files_are_read() {
        assert_eq!(
            parse("# c\nlisteners=http://0.0.0.0:9000\nksql.service.id = x\n").unwrap()[1],
            ("ksql.service.id".into(), "x".into())
        );
        assert_eq!(
            parse("listen = \"127.0.0.1:1\"\n").unwrap()[0],
            ("listen".into(), "127.0.0.1:1".into())
        );
        assert!(parse("nonsense").is_err());
    }

    #[test]
    fn ksql_variables_are_properties_as_in_ksqldb_s_images() {
        let vars = [
            ("KSQL_KSQL_SERVICE_ID", "s_"),
            ("KSQL_BOOTSTRAP_SERVERS", "b:9092"),
            ("KSQL_KSQL_STREAMS_PRODUCER_MAX_IN_FLIGHT", "1"),
            ("KSQL_SOME__UNDERSCORED___DASHED", "x"),
            ("KSQL_OPTS", "-Dx=y"),
            ("KSQL_HEAP_OPTS", "-Xmx1g"),
            ("KSQL_CLASSPATH", "/x"),
            ("EDDY_LISTEN", "0:1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let keys: Vec<String> = ksql_env(vars.into_iter())
            .into_iter()
            .map(|(_, k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "ksql.service.id",
                "bootstrap.servers",
                "ksql.streams.producer.max.in.flight",
                "some_underscored-dashed"
            ]
        );
    }
}
