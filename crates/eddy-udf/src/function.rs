//! The traits a plugin's functions implement. The macros implement them for plain Rust functions;
//! functions that work on whole Arrow arrays (a model scoring a batch) implement them by hand.

use arrow_array::ArrayRef;
use serde_json::Value;

use crate::Result;

/// What an instance of a function is created with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The function's configuration: the server's `ksql.functions.<name>.<key>` properties (and
    /// `ksql.functions._global_.<key>`) as a JSON object of `key: value` strings.
    pub config: Value,
    /// One single-row array per constant argument. An aggregate function gets its initial arguments
    /// (literals in the call). A scalar or table function's running instances get none; when a
    /// query calling it is planned, the host creates an instance with every argument of the call
    /// (NULL where the argument is not a literal) and drops it, so an error from `create` then
    /// (an unknown model, a wrong number of arguments) refuses the query with that message.
    pub constants: Vec<ArrayRef>,
}

impl Options {
    /// A configuration value, if set.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }
}

/// A scalar function (one result per row) or a table function (a list of results per row, each
/// element becoming an output row) over whole arrays. The host keeps one instance per concurrent
/// caller and reuses it, so expensive set-up (loading a model) belongs in [`BatchFunction::create`].
pub trait BatchFunction: Send + 'static {
    /// Creates an instance.
    fn create(options: &Options) -> Result<Self>
    where
        Self: Sized;

    /// Computes the results for `rows` rows; `args` are the argument columns, `rows` long each.
    fn invoke(&mut self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef>;
}

/// Makes the accumulators of an aggregate function, one per group. Shared by the tasks that run it.
pub trait AccumulatorFactory: Send + Sync + 'static {
    fn accumulator(&self) -> Result<Box<dyn Accumulator>>;
}

/// An accumulator made from its call's constant arguments (`#[udaf(constants = [...])]`): one
/// single-row array per constant, in order. An error refuses the query.
pub trait FromConstants: Sized {
    fn from_constants(constants: &[ArrayRef]) -> Result<Self>;
}

/// One group's running aggregate.
pub trait Accumulator: Send + 'static {
    /// Folds in `rows` rows of argument columns. Each row is applied whole or not at all: a row that
    /// fails is left out and the others applied, and the error says so (the host counts it and does
    /// not retry).
    fn update(&mut self, args: &[ArrayRef], rows: usize) -> Result<()>;

    /// Takes rows out again (aggregation over a table, where rows change), row by row as `update`;
    /// only called when the manifest says the function can retract.
    fn retract(&mut self, _args: &[ArrayRef], _rows: usize) -> Result<()> {
        Err("this aggregate function cannot retract values".into())
    }

    /// Folds in states of other accumulators of the same function, one per row.
    fn merge(&mut self, states: &[ArrayRef], rows: usize) -> Result<()>;

    /// The state: one single-row array per state column.
    fn state(&self) -> Result<Vec<ArrayRef>>;

    /// The current result, as a single-row array.
    fn evaluate(&self) -> Result<ArrayRef>;
}
