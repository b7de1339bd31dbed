//! Eddy's streaming runtime: formats, pipelines over Arrow batches (stateless, and aggregating), the
//! statement engine, and in-memory topics for deterministic tests.

pub mod admin;
pub mod aggregate;
pub mod changelog;
pub mod connector;
pub mod engine;
pub mod envelope;
mod evaluate;
pub mod format;
pub mod functions;
pub mod infer;
pub mod join;
pub mod joined_rows;
pub mod layout;
pub mod memory;
pub mod model_catalog;
pub mod model_refs;
pub mod partitioner;
pub mod pipeline;
mod placement;
pub mod properties;
pub mod pull;
pub mod record;
pub mod registry;
pub mod sandbox;
pub mod state_row;
pub mod table_store;
mod unnest;

pub use admin::{TopicAdmin, TopicInfo};
pub use engine::{Engine, Outcome, PersistentQuery};
pub use memory::MemoryTopics;
pub use pipeline::{Pipeline, ProcessedBatch, SinkSpec, SplitPoint};
pub use pull::PullQuery;
pub use record::{Record, RecordRef};

/// The Arrow crate the runtime's batches are made of.
pub use datafusion::arrow;
