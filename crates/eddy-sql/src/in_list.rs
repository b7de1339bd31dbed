//! ksqlDB's typing of `value IN (list)`, applied to a planned query before DataFusion coerces it: each
//! element is typed against the value (`value_typing`); one that can never match is left out, and one
//! that does not fit is ksqlDB's error naming both types.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, lit};

use crate::value_typing::{Element, Misfit, element, render, type_name, widen};

/// Types every IN list of the plan as ksqlDB does.
pub fn type_in_lists(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        let Some(schema) = node.inputs().first().map(|i| i.schema().clone()) else {
            return Ok(Transformed::no(node));
        };
        node.map_expressions(|e| {
            e.transform_up(|e| match e {
                Expr::InList(list) => typed(list, &schema).map(Transformed::yes),
                other => Ok(Transformed::no(other)),
            })
        })
    })
    .map(|t| t.data)
}

fn typed(list: InList, schema: &DFSchema) -> Result<Expr> {
    let value = list.expr.get_type(schema)?;
    // ksqlDB names the value's type widened by the elements before the one that does not fit.
    let mut widened = value.clone();
    let mut kept = Vec::with_capacity(list.list.len());
    for e in list.list {
        match element(&value, e.clone(), schema) {
            Ok(Element::Keep(e)) => {
                if let Ok(t) = e.get_type(schema) {
                    widened = widen(&widened, &t);
                }
                kept.push(e)
            }
            Ok(Element::Never) => {}
            Err(Misfit::Text(message)) => return Err(invalid(message)),
            Err(Misfit::Type) => {
                let given = e.get_type(schema)?;
                return Err(invalid(format!(
                    "operator does not exist: {} = {} ({})\nHint: You might need to add explicit type casts.",
                    type_name(&widened),
                    type_name(&given),
                    render(&e)
                )));
            }
        }
    }
    if kept.is_empty() {
        return Ok(lit(list.negated));
    }
    Ok(Expr::InList(InList {
        expr: list.expr,
        list: kept,
        negated: list.negated,
    }))
}

fn invalid(message: String) -> DataFusionError {
    DataFusionError::Plan(format!("Invalid Predicate: {message}"))
}
