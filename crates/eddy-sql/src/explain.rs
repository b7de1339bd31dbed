//! The execution plan of a query as `EXPLAIN` shows it: one line per step, the output first and
//! each step's input indented below it.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;

use crate::catalog::{Column, Source};
use crate::join::{JoinKind, JoinPlan, JoinSide};
use crate::planner::QueryPlan;
use crate::statement::{ColumnRole, WindowKind};

/// The plan as text, ending with a newline.
pub fn execution_plan(plan: &QueryPlan) -> String {
    let mut steps: Vec<String> = Vec::new();
    if let Some(limit) = plan.limit {
        steps.push(format!("LIMIT {limit}"));
    }
    steps.push(format!("PROJECT {}", columns(&plan.columns)));
    if let Some(agg) = &plan.aggregate {
        if let Some(having) = &agg.having {
            steps.push(format!("HAVING {}", expr(having)));
        }
        let mut step = format!(
            "AGGREGATE {} BY {}",
            list(agg.aggregates.iter().map(|a| {
                let args = a.expressions();
                let args = if args.iter().all(constant) {
                    "*".to_string()
                } else {
                    args.iter().map(expr).collect::<Vec<_>>().join(", ")
                };
                format!("{}({args})", a.fun().name().to_ascii_uppercase())
            })),
            list(agg.group_exprs.iter().map(expr))
        );
        if let Some(window) = &agg.window {
            let _ = match window.kind {
                WindowKind::Tumbling { size_ms } => write!(step, " WINDOW TUMBLING {size_ms} ms"),
                WindowKind::Hopping {
                    size_ms,
                    advance_ms,
                } => write!(step, " WINDOW HOPPING {size_ms} ms ADVANCE {advance_ms} ms"),
                WindowKind::Session { gap_ms } => write!(step, " WINDOW SESSION {gap_ms} ms"),
            };
            if let Some(grace) = window.grace_ms {
                let _ = write!(step, " GRACE {grace} ms");
            }
        }
        if plan.emit_final {
            step.push_str(" EMIT FINAL");
        }
        steps.push(step);
    }
    if plan.partitioned {
        steps.push(format!(
            "PARTITION BY {}",
            list(
                plan.columns
                    .iter()
                    .filter(|c| c.role == ColumnRole::Key)
                    .map(|c| c.name.clone())
            )
        ));
    }
    if !plan.table_functions.is_empty() {
        steps.push(format!(
            "EXPLODE {}",
            list(plan.table_functions.iter().map(expr))
        ));
    }
    if let Some(filter) = &plan.filter {
        steps.push(format!("FILTER {}", expr(filter)));
    }
    let mut out = String::new();
    for (depth, step) in steps.iter().enumerate() {
        line(&mut out, depth, step);
    }
    match &plan.join {
        Some(join) => join_steps(&mut out, steps.len(), join),
        None => line(&mut out, steps.len(), &source(&plan.source)),
    }
    out
}

fn join_steps(out: &mut String, depth: usize, join: &JoinPlan) {
    let kind = match join.kind {
        JoinKind::StreamStream(w) => {
            format!(
                "stream-stream WITHIN ({} ms, {} ms)",
                w.before_ms, w.after_ms
            )
        }
        JoinKind::StreamTable => "stream-table".into(),
        JoinKind::TableTable => "table-table".into(),
        JoinKind::ForeignKey => "foreign-key".into(),
    };
    line(
        out,
        depth,
        &format!(
            "JOIN {:?} {kind} ON {} = {}",
            join.join_type, join.left.key_text, join.right.key_text
        ),
    );
    for side in [&join.left, &join.right] {
        side_steps(out, depth + 1, side);
    }
}

fn side_steps(out: &mut String, depth: usize, side: &JoinSide) {
    let depth = if side.repartition {
        line(out, depth, &format!("REPARTITION BY {}", side.key_text));
        depth + 1
    } else {
        depth
    };
    match &side.nested {
        Some(nested) => join_steps(out, depth, nested),
        None => {
            let alias = if side.alias.is_empty() || side.alias == side.source.name {
                String::new()
            } else {
                format!(" AS {}", side.alias)
            };
            line(out, depth, &format!("{}{alias}", source(&side.source)));
        }
    }
}

fn source(s: &Source) -> String {
    format!(
        "SOURCE {} {} (topic {}, key {}, value {}){}",
        s.kind.as_str(),
        s.name,
        s.topic,
        s.key_format.kind.name(),
        s.value_format.kind.name(),
        s.window
            .map(|w| format!(" windowed {:?}", w.window_type))
            .unwrap_or_default()
    )
}

fn line(out: &mut String, depth: usize, text: &str) {
    let _ = writeln!(out, "{:indent$}> {text}", "", indent = depth * 2);
}

fn columns(cols: &[Column]) -> String {
    list(cols.iter().map(|c| {
        let role = match c.role {
            ColumnRole::Key => " KEY",
            _ => "",
        };
        format!("{} {}{role}", c.name, c.sql_type)
    }))
}

fn list(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "()".into()
    } else {
        v.join(", ")
    }
}

/// Whether an expression reads no column (`COUNT(*)` counts a constant).
fn constant(e: &Arc<dyn PhysicalExpr>) -> bool {
    !e.is::<PhysicalColumn>() && e.children().into_iter().all(constant)
}

/// A physical expression without the column indexes DataFusion prints (`V@1` is `V`).
fn expr(e: &Arc<dyn PhysicalExpr>) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '@' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}
