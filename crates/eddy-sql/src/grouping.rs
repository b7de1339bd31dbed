//! ksqlDB's rules for an aggregating SELECT, checked on the query as written so that messages show
//! its expressions as ksqlDB prints them: what may appear outside aggregate functions, no aggregates
//! in GROUP BY or inside other aggregates, and no GROUP BY without an aggregate.

use std::ops::ControlFlow;

use eddy_common::{Result, plan_err};
use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Select,
    SelectItem, visit_expressions, visit_expressions_mut,
};

use crate::catalog::{WINDOWEND, WINDOWSTART};
use crate::normalize::ident_name;
use crate::render::ksql_text;

/// Checks `select` (before normalization) over `source` (its name or alias). `windowed`: the query has a WINDOW clause, so its bounds
/// may be selected; `persistent`: it builds a table, which needs a GROUP BY; `is_aggregate` and
/// `is_function` tell aggregate and known function names (lower case).
pub fn check(
    select: &Select,
    source: &str,
    windowed: bool,
    persistent: bool,
    is_aggregate: &dyn Fn(&str) -> bool,
    is_function: &dyn Fn(&str) -> bool,
    is_table_function: &dyn Fn(&str) -> bool,
) -> Result<()> {
    // `GROUP BY (a, b)` groups by a and b.
    let group_by: Vec<&Expr> = match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => exprs
            .iter()
            .flat_map(|e| match e {
                Expr::Tuple(items) => items.iter().collect(),
                other => vec![other],
            })
            .collect(),
        GroupByExpr::All(_) => Vec::new(),
    };
    let aggregate_of = |f: &Function| is_aggregate(&f.name.to_string().to_lowercase());
    let first_aggregate = |e: &Expr| -> Option<Function> {
        match visit_expressions(e, |x| match x {
            Expr::Function(f) if aggregate_of(f) => ControlFlow::Break(f.clone()),
            _ => ControlFlow::Continue(()),
        }) {
            ControlFlow::Break(f) => Some(f),
            ControlFlow::Continue(()) => None,
        }
    };
    if let Some(f) = group_by.iter().find_map(|e| first_aggregate(e)) {
        return Err(plan_err!(
            "GROUP BY does not support aggregate functions: {} is an aggregate function.",
            f.name.to_string().to_uppercase()
        ));
    }
    let items: Vec<&Expr> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        })
        .collect();
    let aggregates: Vec<Function> = items
        .iter()
        .copied()
        .chain(select.having.as_ref())
        .filter_map(&first_aggregate)
        .collect();
    let table_function = items.iter().any(|e| {
        visit_expressions(*e, |x| match x {
            Expr::Function(f) if is_table_function(&f.name.to_string().to_lowercase()) => {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    });
    if table_function && (!aggregates.is_empty() || !group_by.is_empty()) {
        return Err(plan_err!(
            "Table functions cannot be used with aggregations."
        ));
    }
    for outer in &aggregates {
        if let Some(inner) = args(outer).find_map(first_aggregate) {
            return Err(plan_err!(
                "Aggregate functions can not be nested: {}({})",
                outer.name.to_string().to_uppercase(),
                ksql_text(&Expr::Function(inner))
            ));
        }
    }
    if aggregates.is_empty() {
        // A function the planner does not know gets its own message there.
        let unknown = items
            .iter()
            .copied()
            .chain(select.having.as_ref())
            .any(|e| {
                visit_expressions(e, |x| match x {
                    Expr::Function(f) if !is_function(&f.name.to_string().to_lowercase()) => {
                        ControlFlow::Break(())
                    }
                    _ => ControlFlow::Continue(()),
                })
                .is_break()
            });
        if !group_by.is_empty() && !unknown {
            return Err(plan_err!(
                "GROUP BY requires aggregate functions in either the SELECT or HAVING clause."
            ));
        }
        return Ok(());
    }
    if group_by.is_empty() && persistent {
        let names: Vec<String> = aggregates
            .iter()
            .map(|f| ksql_text(&Expr::Function(f.clone())).replace("()", "(ROWTIME)"))
            .collect();
        return Err(plan_err!(
            "CREATE TABLE AS SELECT statement does not support aggregate function [{}] without a GROUP BY clause.",
            names.join(", ")
        ));
    }
    let grouped: Vec<String> = group_by.iter().map(|e| bare_text(e)).collect();
    for (i, g) in grouped.iter().enumerate() {
        if grouped[..i].contains(g) {
            return Err(plan_err!(
                "Duplicate GROUP BY expression: {}",
                qualified_text(group_by[i], source)
            ));
        }
    }
    let covered = Coverage {
        grouped: &grouped,
        windowed,
        is_aggregate: &aggregate_of,
    };
    let loose: Vec<String> = items
        .iter()
        .filter(|e| !covered.covers(e))
        .map(|e| ksql_text(e))
        .collect();
    if !loose.is_empty() {
        return Err(plan_err!(
            "Non-aggregate SELECT expression(s) not part of GROUP BY: {}\nEither add the column(s) to the GROUP BY or remove them from the SELECT.",
            loose.join(", ")
        ));
    }
    Ok(())
}

/// An expression's text with its column references qualified by the source, as ksqlDB shows them.
fn qualified_text(e: &Expr, source: &str) -> String {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        if let Expr::Identifier(i) = x {
            let name = ident_name(&i.value, i.quote_style);
            *x = Expr::CompoundIdentifier(vec![
                Ident::with_quote('"', source),
                Ident::with_quote('"', name),
            ]);
        }
        ControlFlow::<()>::Continue(())
    });
    ksql_text(&e)
}

/// An expression's text with column references unqualified (`T.F1` and `F1` are one column here).
fn bare_text(e: &Expr) -> String {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        if let Expr::CompoundIdentifier(parts) = x
            && let Some(last) = parts.last().cloned()
        {
            *x = Expr::Identifier(last);
        }
        ControlFlow::<()>::Continue(())
    });
    ksql_text(&e)
}

fn args(f: &Function) -> impl Iterator<Item = &Expr> {
    let list = match &f.args {
        FunctionArguments::List(list) => list.args.as_slice(),
        _ => &[],
    };
    list.iter().filter_map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
        | FunctionArg::Named {
            arg: FunctionArgExpr::Expr(e),
            ..
        }
        | FunctionArg::ExprNamed {
            arg: FunctionArgExpr::Expr(e),
            ..
        } => Some(e),
        _ => None,
    })
}

/// What an aggregating SELECT may show outside aggregate functions.
struct Coverage<'a> {
    /// The GROUP BY expressions as ksqlDB prints them.
    grouped: &'a [String],
    windowed: bool,
    is_aggregate: &'a dyn Fn(&Function) -> bool,
}

impl Coverage<'_> {
    /// Whether `e` is made only of grouped expressions, aggregates, window bounds and literals.
    /// Expressions this check does not know are left to the planner.
    fn covers(&self, e: &Expr) -> bool {
        if self.grouped.contains(&bare_text(e)) {
            return true;
        }
        match e {
            Expr::Function(f) if (self.is_aggregate)(f) => true,
            Expr::Function(f) => args(f).all(|a| self.covers(a)),
            Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|i| {
                let name = ident_name(&i.value, i.quote_style);
                self.windowed && (name == WINDOWSTART || name == WINDOWEND)
            }),
            Expr::Identifier(i) => {
                let name = ident_name(&i.value, i.quote_style);
                self.windowed && (name == WINDOWSTART || name == WINDOWEND)
            }
            Expr::BinaryOp { left, right, .. } => self.covers(left) && self.covers(right),
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => {
                self.covers(expr)
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => std::iter::once(expr)
                .chain(substring_from)
                .chain(substring_for)
                .all(|x| self.covers(x)),
            _ => true,
        }
    }
}
