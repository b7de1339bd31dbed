//! ksqlDB's type checks of WHERE comparisons, on the query as written so that messages show it: a
//! column compared with a value of another kind (`ID = '10'` on an INT) or with the NULL literal is
//! an error naming both sides and their types.

use std::ops::ControlFlow;

use eddy_common::{Result, plan_err};
use sqlparser::ast::{BinaryOperator, Expr, visit_expressions};

use crate::catalog::{ROWOFFSET, ROWPARTITION, ROWTIME, Source, WINDOWEND, WINDOWSTART};
use crate::normalize::{ident_name, literal_type};
use crate::render::ksql_text;

/// Checks the comparisons of a WHERE clause over `source`.
pub fn check_where(selection: &Expr, source: &Source) -> Result<()> {
    let found = visit_expressions(selection, |e| {
        let Expr::BinaryOp { left, op, right } = e else {
            return ControlFlow::Continue(());
        };
        let Some(name) = comparison_name(op) else {
            return ControlFlow::Continue(());
        };
        let (Some(l), Some(r)) = (operand_type(left, source), operand_type(right, source)) else {
            return ControlFlow::Continue(());
        };
        let statement = ksql_text(e);
        let message = match (kind(&l), kind(&r)) {
            (Kind::Null, Kind::Null) | (Kind::Other, _) | (_, Kind::Other) => None,
            (Kind::Null, _) | (_, Kind::Null) => {
                let typed = if kind(&l) == Kind::Null { &r } else { &l };
                Some(format!(
                    "Comparison with NULL not supported: {typed} {op} NULL\nUse 'IS NULL' or 'IS NOT NULL' instead."
                ))
            }
            (a, b) if a != b => Some(format!(
                "Cannot compare {} ({l}) to {} ({r}) with {name}.",
                ksql_text(left),
                ksql_text(right)
            )),
            _ => None,
        };
        match message {
            Some(m) => ControlFlow::Break(plan_err!(
                "Error in WHERE expression: {m}\nStatement: {statement}"
            )),
            None => ControlFlow::Continue(()),
        }
    });
    crate::normalize::done(found)
}

/// Whether values of two ksqlDB types (names as printed; `null` for the NULL literal) can be
/// compared: numbers with numbers, text with text, booleans with booleans; other types are not
/// checked here.
pub fn comparable(a: &str, b: &str) -> bool {
    match (kind(a), kind(b)) {
        (Kind::Other, _) | (_, Kind::Other) => true,
        (x, y) => x == y,
    }
}

fn comparison_name(op: &BinaryOperator) -> Option<&'static str> {
    Some(match op {
        BinaryOperator::Eq => "EQUAL",
        BinaryOperator::NotEq => "NOT_EQUAL",
        BinaryOperator::Lt => "LESS_THAN",
        BinaryOperator::LtEq => "LESS_THAN_OR_EQUAL",
        BinaryOperator::Gt => "GREATER_THAN",
        BinaryOperator::GtEq => "GREATER_THAN_OR_EQUAL",
        _ => return None,
    })
}

/// The ksqlDB type name of a column reference or literal; window bounds are left out (pull queries
/// compare them with timestamp text).
fn operand_type(e: &Expr, source: &Source) -> Option<String> {
    let name = match e {
        Expr::Identifier(i) => ident_name(&i.value, i.quote_style),
        Expr::CompoundIdentifier(parts) => {
            let i = parts.last()?;
            ident_name(&i.value, i.quote_style)
        }
        Expr::Nested(inner) => return operand_type(inner, source),
        other => return literal_type(other),
    };
    match name.as_str() {
        WINDOWSTART | WINDOWEND => None,
        ROWTIME | ROWOFFSET => Some("BIGINT".into()),
        ROWPARTITION => Some("INTEGER".into()),
        _ => source.column(&name).map(|c| c.sql_type.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Number,
    Text,
    Boolean,
    /// Anything else (timestamps compare with text, collections, ...): not checked here.
    Other,
}

fn kind(type_name: &str) -> Kind {
    match type_name {
        "null" => Kind::Null,
        "STRING" => Kind::Text,
        "BOOLEAN" => Kind::Boolean,
        t if ["INTEGER", "BIGINT", "DOUBLE", "DECIMAL"]
            .iter()
            .any(|n| t.starts_with(n)) =>
        {
            Kind::Number
        }
        _ => Kind::Other,
    }
}
