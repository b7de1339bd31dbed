//! Kafka for Eddy through rdkafka: cluster administration, and query tasks that consume, process and
//! produce with at-least-once commits.

mod at_least_once;
pub mod client_settings;
pub mod cluster;
pub mod command_log;
mod consume;
mod crash_point;
pub mod delivery;
pub mod delivery_error;
mod exact_output;
mod exactly_once;
mod internal_topics;
mod ledger;
pub mod origin;
pub mod peers;
mod poll;
pub mod print;
pub mod processing_log;
mod push;
mod query_io;
mod query_stats;
mod query_task;
mod rebalance;
mod repartition;
mod split_query;
mod stateful;
pub mod supervisor;
pub mod table_feed;
mod table_restore;
mod task;
mod time_order;
mod transaction;
mod transactional;

pub use client_settings::{ClientSettings, Role, SettingError};
pub use cluster::{ClusterConfig, InternalTopic, KafkaCluster, Transactions};
pub use command_log::CommandLog;
pub use internal_topics::{changelog_topic, checkpoint_topic, is_internal_topic};
pub use peers::Peers;
pub use print::{PrintSpec, start_print};
pub use processing_log::{ProcessingLog, processing_log_topic};
pub use push::{PushEvent, start_push};
pub use query_stats::QueryStats;
pub use query_task::{QueryTask, TaskConfig, exactly_once_guarantee, max_task_idle};
pub use supervisor::Backoff;
pub use table_feed::TableFeed;
pub use task::start_persistent;
