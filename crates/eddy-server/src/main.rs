//! `eddy-server`: Eddy's streaming SQL server with a ksqlDB-compatible REST API.

mod config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;

use eddy_kafka::{ClusterConfig, KafkaCluster};
use eddy_runtime::engine::Properties;
use eddy_runtime::functions::PluginDir;
use eddy_runtime::registry::SchemaRegistry;
use eddy_server::{local_broker, routes, schema_registry, state};

use std::io::IsTerminal;
use std::path::Path;

use eddy_server::access::Access;
use eddy_server::peer_client::{self, PeerClient};
use eddy_server::tls_listener::{self, TlsListener};

use crate::config::{Config, Tool};

/// mimalloc: batch-sized allocations that glibc's malloc maps and unmaps (page faults on every batch)
/// stay in its pages; 15-20 % more events per CPU-second on the stateless path (`--bench baseline`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = config::load()?;
    if let Some(tool) = &config.args.tool {
        return run_tool(tool);
    }
    eddy_server::log_format::init(config.args.log_format);
    eddy_server::client_logs::forward();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    eddy_server::runtime::build()?.block_on(serve(config))
}

/// Reads a secret and prints what a credentials or tokens file holds for it.
fn run_tool(tool: &Tool) -> anyhow::Result<()> {
    let prompt = match tool {
        Tool::HashPassword => "Password: ",
        Tool::HashToken => "Token: ",
    };
    let secret = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    }
    .context("cannot read the secret")?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    let line = match tool {
        Tool::HashPassword => eddy_server::credentials::hash_password(secret),
        Tool::HashToken => eddy_server::api_tokens::hash_token(secret),
    }
    .map_err(anyhow::Error::msg)?;
    println!("{line}");
    Ok(())
}

/// The listen address's scheme (https or not) and address.
fn listen_address(listen: &str) -> anyhow::Result<(bool, &str)> {
    match listen.split_once("://") {
        None => Ok((false, listen)),
        Some((scheme, address)) if scheme.eq_ignore_ascii_case("http") => Ok((false, address)),
        Some((scheme, address)) if scheme.eq_ignore_ascii_case("https") => Ok((true, address)),
        Some((scheme, _)) => anyhow::bail!("listeners: {scheme}:// is not http:// or https://"),
    }
}

/// The REST API's TLS configuration (for https) and how this server calls its peers.
fn security(
    config: &Config,
    https: bool,
) -> anyhow::Result<(Option<Arc<rustls::ServerConfig>>, Access, PeerClient)> {
    let setting = |key: &str| config.security.get(key).map(|v| v.trim());
    let access = Access::from_settings(setting)?;
    let files = (
        setting(tls_listener::CERTIFICATE_LOCATION),
        setting(tls_listener::KEY_LOCATION),
    );
    let tls = match (https, files) {
        (true, (Some(certificate), Some(key))) => Some(tls_listener::server_config(
            Path::new(certificate),
            Path::new(key),
        )?),
        (true, _) => anyhow::bail!(
            "an https:// listener needs {} and {} (PEM files; the top-level ssl.* settings are the Kafka clients')",
            tls_listener::CERTIFICATE_LOCATION,
            tls_listener::KEY_LOCATION
        ),
        (false, (None, None)) => None,
        (false, _) => anyhow::bail!(
            "{} and {} are set but the listener is not https://",
            tls_listener::CERTIFICATE_LOCATION,
            tls_listener::KEY_LOCATION
        ),
    };
    // Peers are checked against the configured CAs, or else the certificates this server has:
    // servers of one service id usually share a certificate or its CA.
    let ca = match setting(peer_client::CA_LOCATION).or(https.then_some(files.0).flatten()) {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("cannot read {path}"))?),
        None => None,
    };
    let peers = PeerClient::new(ca.as_deref(), access.peer_secret().map(str::to_string))?;
    Ok((tls, access, peers))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let (https, listen) = listen_address(&config.args.listen)?;
    let listen = listen.to_string();
    let (tls, access, peers) = security(&config, https)?;
    if access.is_on() {
        tracing::info!("authentication is on: {}", access.describe());
    }
    let args = config.args;
    let (bootstrap, broker) = match &args.bootstrap_servers {
        Some(b) => (b.clone(), None),
        None => {
            let broker = local_broker::LocalBroker::start(&args.data_dir)
                .context("cannot start the local broker")?;
            tracing::info!(
                "no --bootstrap-servers given: started a private local broker at {} (data in {})",
                broker.bootstrap(),
                args.data_dir.display()
            );
            (broker.bootstrap().to_string(), Some(broker))
        }
    };
    let service_id = args.service_id.clone();
    let local = broker.as_ref().map(|b| b.bootstrap().to_string());
    let registry = args.schema_registry_url.as_deref().map(|url| {
        tracing::info!("schemas are kept in the Schema Registry at {url}");
        Arc::new(schema_registry::HttpRegistry::with_access(
            url,
            config.registry.clone(),
        )) as Arc<dyn SchemaRegistry>
    });
    let plugins = match &args.plugin_dir {
        Some(dir) => {
            // The copies the plugins are loaded from stay beside the server's data, private to it.
            let cache = args.data_dir.join("plugin-cache");
            let plugins = PluginDir::with_cache(dir, &cache).map_err(anyhow::Error::msg)?;
            // Plugins that fail to load are logged by the engine; the others are registered.
            for (path, e) in plugins.reload().errors {
                tracing::error!("UDF plugin {} not loaded: {e}", path.display());
            }
            Some(Arc::new(plugins))
        }
        None => None,
    };
    let guarantee = Properties::from([(
        "processing.guarantee".to_string(),
        args.processing_guarantee.clone(),
    )]);
    let exactly_once = eddy_kafka::exactly_once_guarantee(&guarantee, false)?;
    let cluster_config = ClusterConfig {
        bootstrap: bootstrap.clone(),
        transactions: args.transactions,
        clients: config.clients,
        internal_replicas: config.internal_replicas,
        state_replicas: config.state_replicas,
    };
    for setting in cluster_config.clients.describe() {
        tracing::info!("Kafka client setting {setting}");
    }
    let properties = config.properties;
    let per_record_metrics = config.per_record_metrics;
    // With plugins, the model catalog is written out beside the server's data for them; a model
    // directory given in the settings (or EDDY_MODEL_DIR) is registered into it at the start. Without
    // plugins nothing scores with models, and the catalog stays in memory (and the command log).
    let models = args.plugin_dir.as_ref().map(|_| state::ModelDirs {
        catalog: args.data_dir.join("models"),
        preload: properties
            .get(state::MODEL_DIR_PROPERTY)
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("EDDY_MODEL_DIR").map(std::path::PathBuf::from)),
    });
    let state = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let cluster = Arc::new(KafkaCluster::open(cluster_config)?);
        cluster
            .wait_ready(Duration::from_secs(30))
            .with_context(|| format!("the Kafka cluster at {bootstrap} does not answer"))?;
        Ok(state::AppState::start(
            cluster,
            service_id,
            local,
            registry,
            plugins,
            state::QueryDefaults {
                properties,
                exactly_once,
                log_rows: args.processing_log_rows,
                metrics: per_record_metrics,
                models,
            },
        )?)
    })
    .await??;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let scheme = if https { "https" } else { "http" };
    tracing::info!(
        "Eddy {} listening on {scheme}://{address}",
        eddy_common::VERSION
    );
    let advertised = args.advertised_url.clone().unwrap_or_else(|| {
        let host = if address.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            address.ip().to_string()
        };
        format!("{scheme}://{host}:{}", address.port())
    });
    state
        .max_push_queries
        .store(args.max_push_queries, std::sync::atomic::Ordering::Relaxed);
    state.secure(access, peers);
    state.follow_commands()?;
    let announcing = state.clone();
    tokio::task::spawn_blocking(move || announcing.announce(advertised)).await??;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    let app = routes::app(state);
    match tls {
        Some(tls) => {
            axum::serve(TlsListener::new(listener, tls)?, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        None => {
            // Responses go out as written: with Nagle's algorithm a small response waited for the
            // client's delayed ACK (pull queries over HTTP/2 had a p99 of 44 ms).
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    drop(broker);
    Ok(())
}
