//! Eddy's server as a library: the application state over a Kafka cluster, the ksqlDB-compatible HTTP
//! routes and the private local broker; the `eddy-server` binary adds configuration and serving.

pub mod client_logs;
pub mod entity;
mod inserts;
pub mod local_broker;
pub mod metrics;
mod query_view;
mod registry_api;
mod request;
pub mod routes;
pub mod runtime;
pub mod schema_registry;
pub mod settings;
pub mod state;
