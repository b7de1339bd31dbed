//! Why the REST API's security settings cannot be used: each is the operator's to fix, and names the
//! setting or file at fault.

use std::path::PathBuf;

/// A security setting or one of the files it names is wrong.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A file a setting names cannot be read.
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of a credentials or tokens file is not `name: hash[, role ...]`.
    #[error("{}, line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A setting's value cannot be used.
    #[error("{key}: {reason}")]
    Setting { key: &'static str, reason: String },
}
