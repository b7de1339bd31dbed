//! Kafka for Eddy through rdkafka: cluster administration, and query tasks that consume, process and
//! produce with at-least-once commits.

pub mod cluster;
pub mod command_log;
pub mod delivery;
pub mod peers;
pub mod print;
pub mod processing_log;
mod repartition;
mod stateful;
pub mod supervisor;
pub mod task;

pub use cluster::KafkaCluster;
pub use command_log::CommandLog;
pub use peers::Peers;
pub use print::{PrintSpec, start_print};
pub use processing_log::{ProcessingLog, processing_log_topic};
pub use stateful::{changelog_topic, internal_topics};
pub use supervisor::Backoff;
pub use task::{PushEvent, QueryStats, QueryTask, TaskConfig, start_persistent, start_push};
