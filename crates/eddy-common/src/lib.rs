//! Shared vocabulary of Eddy: the error type, source positions and the REST wire types used by both the
//! server and the shell.

pub mod closest;
pub mod error;
pub mod keywords;
pub mod rest;

pub use error::{Error, Position, Result};

/// Eddy's version, reported by `/info` and the shell banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
