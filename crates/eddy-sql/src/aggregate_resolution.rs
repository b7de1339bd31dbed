//! ksqlDB's resolution of aggregate calls, applied to a planned query before DataFusion coerces
//! them: each call's arguments must fit one of the function's documented overloads
//! (crate::functions::overloads), so `MAX(flag)` over a BOOLEAN is refused as in ksqlDB, with the
//! same message as a scalar function's.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

use crate::functions::overloads::fits_any;
use crate::functions::reference::find;
use crate::functions::refuse;

/// Refuses the plan's first aggregate call that fits none of its function's overloads.
pub fn check_aggregates(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.apply(|node| {
        if let LogicalPlan::Aggregate(aggregate) = node {
            let schema = aggregate.input.schema();
            for e in &aggregate.aggr_expr {
                e.apply(|e| check(e, schema))?;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(plan)
}

fn check(e: &Expr, schema: &DFSchema) -> Result<TreeNodeRecursion> {
    let Expr::AggregateFunction(call) = e else {
        return Ok(TreeNodeRecursion::Continue);
    };
    let name = call.func.name().to_ascii_lowercase();
    let Some(doc) = find(&name).filter(|d| d.kind == "AGGREGATE") else {
        return Ok(TreeNodeRecursion::Continue);
    };
    let types = call
        .params
        .args
        .iter()
        .map(|a| a.get_type(schema))
        .collect::<Result<Vec<_>>>()?;
    if !fits_any(&doc.overloads, &types) {
        return Err(refuse(&name, &types));
    }
    Ok(TreeNodeRecursion::Jump)
}
