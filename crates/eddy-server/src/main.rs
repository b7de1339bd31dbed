//! `eddy-server`: Eddy's streaming SQL server with a ksqlDB-compatible REST API.

mod config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use eddy_kafka::{ClusterConfig, KafkaCluster};
use eddy_runtime::engine::Properties;
use eddy_runtime::functions::PluginDir;
use eddy_runtime::registry::SchemaRegistry;
use eddy_server::{local_broker, routes, schema_registry, state};

use crate::config::Config;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    eddy_server::client_logs::forward();
    let config = config::load()?;
    eddy_server::runtime::build()?.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
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
            },
        )?)
    })
    .await??;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        "Eddy {} listening on http://{address}",
        eddy_common::VERSION
    );
    let advertised = args.advertised_url.clone().unwrap_or_else(|| {
        let host = if address.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            address.ip().to_string()
        };
        format!("http://{host}:{}", address.port())
    });
    state
        .max_push_queries
        .store(args.max_push_queries, std::sync::atomic::Ordering::Relaxed);
    state.follow_commands()?;
    let announcing = state.clone();
    tokio::task::spawn_blocking(move || announcing.announce(advertised)).await??;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    axum::serve(listener, routes::app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    drop(broker);
    Ok(())
}
