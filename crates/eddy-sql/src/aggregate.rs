//! The stateful part of an aggregating query: its GROUP BY expressions, its aggregate functions (as
//! DataFusion builds them) and HAVING, ready for an operator that keeps one set of accumulators per group.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::statement::WindowSpec;

/// How a query aggregates its (filtered) input.
#[derive(Debug)]
pub struct AggregateSpec {
    /// The GROUP BY expressions, over the query's input batches (without the window bounds).
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The aggregate functions; their arguments are over the query's input batches.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// HAVING, over `schema`.
    pub having: Option<Arc<dyn PhysicalExpr>>,
    /// The window of a windowed aggregation: every group is then a key and a window.
    pub window: Option<WindowSpec>,
    /// The aggregated rows: the GROUP BY columns, then (when windowed) WINDOWSTART and WINDOWEND, then
    /// one column per aggregate function.
    pub schema: SchemaRef,
    /// The rows aggregated (the query's filtered input).
    pub input_schema: SchemaRef,
}
