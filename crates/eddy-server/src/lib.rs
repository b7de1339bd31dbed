//! Eddy's server as a library: the application state over a Kafka cluster, the ksqlDB-compatible HTTP
//! routes and the private local broker; the `eddy-server` binary adds configuration and serving.

pub mod access;
pub mod access_error;
pub mod api_tokens;
mod assertions;
pub mod client_logs;
pub mod command_status;
mod connector_entities;
pub mod console;
pub mod credentials;
pub mod entity;
mod entity_value;
pub mod function_entities;
mod inserts;
mod jwt;
pub mod local_broker;
pub mod log_format;
pub mod metrics;
mod model_api;
mod model_entities;
mod operations_api;
pub mod peer_client;
mod principal_file;
mod query_description;
mod query_view;
mod registry_api;
mod request;
pub mod routes;
pub mod runtime;
pub mod schema_registry;
pub mod settings;
pub mod state;
pub mod tls_listener;
mod variable_list;
