//! Server configuration: command-line flags, `EDDY_*` environment variables and an optional
//! properties or TOML file (flags and environment win over the file).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use eddy_kafka::Transactions;

/// Eddy's streaming SQL server.
#[derive(Debug, Clone, Parser)]
#[command(name = "eddy-server", version, about)]
pub struct Args {
    /// Address to serve the REST API on.
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
    /// A properties (`key=value`) or TOML file with the settings above (`listen`, `bootstrap.servers`,
    /// `data.dir`, `service.id`; ksqlDB's `listeners` and `ksql.service.id` are understood too).
    #[arg(long, env = "EDDY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Applies the config file under the flags and environment.
pub fn load(mut args: Args) -> anyhow::Result<Args> {
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let entries = parse(&text).with_context(|| format!("in {}", path.display()))?;
    let from_flags = |name: &str| std::env::args().any(|a| a.starts_with(&format!("--{name}")));
    for (key, value) in entries {
        match key.replace(['_', '-'], ".").as_str() {
            "listen" | "listeners"
                if !from_flags("listen") && std::env::var("EDDY_LISTEN").is_err() =>
            {
                args.listen = value.trim_start_matches("http://").to_string()
            }
            "bootstrap.servers" | "ksql.streams.bootstrap.servers"
                if args.bootstrap_servers.is_none() =>
            {
                args.bootstrap_servers = Some(value)
            }
            "data.dir" if !from_flags("data-dir") && std::env::var("EDDY_DATA_DIR").is_err() => {
                args.data_dir = PathBuf::from(value)
            }
            "service.id" | "ksql.service.id"
                if !from_flags("service-id") && std::env::var("EDDY_SERVICE_ID").is_err() =>
            {
                args.service_id = value
            }
            "schema.registry.url" | "ksql.schema.registry.url"
                if args.schema_registry_url.is_none() =>
            {
                args.schema_registry_url = Some(value)
            }
            "advertised.url" | "ksql.advertised.listener" if args.advertised_url.is_none() => {
                args.advertised_url = Some(value)
            }
            "plugin.dir" | "ksql.extension.dir" if args.plugin_dir.is_none() => {
                args.plugin_dir = Some(PathBuf::from(value))
            }
            "ksql.max.push.queries"
                if !from_flags("max-push-queries")
                    && std::env::var("EDDY_MAX_PUSH_QUERIES").is_err() =>
            {
                args.max_push_queries = value
                    .trim()
                    .parse()
                    .with_context(|| format!("ksql.max.push.queries: '{value}' is not a number"))?
            }
            "processing.guarantee" | "ksql.streams.processing.guarantee"
                if !from_flags("processing-guarantee")
                    && std::env::var("EDDY_PROCESSING_GUARANTEE").is_err() =>
            {
                args.processing_guarantee = value
            }
            "eddy.transactions"
                if !from_flags("transactions") && std::env::var("EDDY_TRANSACTIONS").is_err() =>
            {
                args.transactions = value.parse()?
            }
            "ksql.logging.processing.rows.include"
                if !from_flags("processing-log-rows")
                    && std::env::var("EDDY_PROCESSING_LOG_ROWS").is_err() =>
            {
                args.processing_log_rows = value.trim().parse().with_context(|| {
                    format!("ksql.logging.processing.rows.include: '{value}' is not true or false")
                })?
            }
            "listen"
            | "listeners"
            | "schema.registry.url"
            | "ksql.schema.registry.url"
            | "advertised.url"
            | "ksql.advertised.listener"
            | "plugin.dir"
            | "ksql.extension.dir"
            | "bootstrap.servers"
            | "ksql.streams.bootstrap.servers"
            | "data.dir"
            | "service.id"
            | "ksql.service.id"
            | "ksql.max.push.queries"
            | "processing.guarantee"
            | "ksql.streams.processing.guarantee"
            | "eddy.transactions"
            | "ksql.logging.processing.rows.include" => {}
            other => bail!(
                "unknown setting '{other}' (known: listen, bootstrap.servers, data.dir, service.id, ksql.schema.registry.url, ksql.advertised.listener, plugin.dir, ksql.max.push.queries, processing.guarantee, eddy.transactions, ksql.logging.processing.rows.include)"
            ),
        }
    }
    Ok(args)
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
}
