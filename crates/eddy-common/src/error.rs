//! The error type of Eddy's engine crates; every variant says who is at fault.

use std::fmt;

/// A `Result` with Eddy's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A 1-based line and column in a SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}", self.line, self.column)
    }
}

/// What went wrong, classified by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's SQL does not parse; carries where it stopped making sense.
    #[error("{}", fmt_syntax(.message, .position))]
    Syntax {
        message: String,
        position: Option<Position>,
    },
    /// The SQL parses but cannot be planned: unknown sources or columns, type errors, invalid properties.
    #[error("{0}")]
    Plan(String),
    /// A valid statement asks for something Eddy does not do (yet).
    #[error("{0}")]
    NotSupported(String),
    /// A request that is malformed apart from its SQL (bad JSON, unknown query id, ...).
    #[error("{0}")]
    BadRequest(String),
    /// Processing data failed at run time (a record that cannot be decoded, a failing function).
    #[error("{0}")]
    Execution(String),
    /// Something outside Eddy failed: the Kafka cluster, the file system.
    #[error("{0}")]
    External(String),
    /// A bug in Eddy.
    #[error("internal error (a bug in Eddy, please report it): {0}")]
    Internal(String),
}

fn fmt_syntax(message: &str, position: &Option<Position>) -> String {
    match position {
        Some(p) => format!("{p}: Syntax Error\n{message}"),
        None => format!("Syntax Error\n{message}"),
    }
}

impl Error {
    /// True when the user (their SQL or request) is at fault rather than Eddy or its environment.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Syntax { .. } | Error::Plan(_) | Error::NotSupported(_) | Error::BadRequest(_)
        )
    }
}

/// `return Err(plan_err!("unknown column {}", c))` style constructors, one per fault class.
#[macro_export]
macro_rules! plan_err {
    ($($arg:tt)*) => { $crate::Error::Plan(format!($($arg)*)) };
}
/// Builds [`Error::NotSupported`](crate::Error::NotSupported) from a format string.
#[macro_export]
macro_rules! not_supported {
    ($($arg:tt)*) => { $crate::Error::NotSupported(format!($($arg)*)) };
}
/// Builds [`Error::Execution`](crate::Error::Execution) from a format string.
#[macro_export]
macro_rules! exec_err {
    ($($arg:tt)*) => { $crate::Error::Execution(format!($($arg)*)) };
}
/// Builds [`Error::Internal`](crate::Error::Internal) from a format string.
#[macro_export]
macro_rules! internal_err {
    ($($arg:tt)*) => { $crate::Error::Internal(format!($($arg)*)) };
}
/// Builds [`Error::External`](crate::Error::External) from a format string.
#[macro_export]
macro_rules! external_err {
    ($($arg:tt)*) => { $crate::Error::External(format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_name_their_position_like_ksqldb() {
        let e = Error::Syntax {
            message: "Expecting ')'".into(),
            position: Some(Position {
                line: 1,
                column: 32,
            }),
        };
        assert_eq!(e.to_string(), "line 1:32: Syntax Error\nExpecting ')'");
        assert!(e.is_user_error());
        assert!(!internal_err!("x").is_user_error());
    }
}
