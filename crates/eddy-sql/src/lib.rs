//! ksqlDB-dialect SQL for Eddy: parsing on sqlparser, the type system, the catalog of sources and
//! planning of queries onto DataFusion expressions.

pub mod aggregate;
mod aggregate_resolution;
pub mod alias_route;
pub mod catalog;
mod constructors;
pub mod dialect;
pub mod explain;
pub mod functions;
pub mod grouping;
pub mod identifier;
mod in_list;
pub mod java;
pub mod java_zone;
pub mod join;
pub mod limits;
pub mod normalize;
pub mod parser;
pub mod planner;
pub mod pull;
pub mod render;
pub mod statement;
pub mod typecheck;
pub mod types;
mod value_typing;
pub mod variables;
pub mod window;

pub use parser::{ParsedStatement, Types, parse, parse_with};
pub use statement::Statement;
pub use types::SqlType;

/// The sqlparser crate Eddy parses with (the same version DataFusion plans from).
pub use sqlparser;
