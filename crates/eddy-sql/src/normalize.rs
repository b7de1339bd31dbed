//! ksqlDB's identifier rules applied to sqlparser's AST: unquoted identifiers are upper-cased, quoted ones
//! kept, and all are marked quoted so DataFusion keeps their case; `struct->field` becomes `get_field`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, TableFactor, Value, VisitMut, VisitorMut,
};

/// The catalog name of an identifier: upper-cased unless it was quoted.
pub fn ident_name(value: &str, quote_style: Option<char>) -> String {
    match quote_style {
        Some(_) => value.to_string(),
        None => value.to_uppercase(),
    }
}

/// Normalizes one identifier in place.
pub fn ident(i: &mut Ident) {
    i.value = ident_name(&i.value, i.quote_style);
    i.quote_style = Some('"');
}

fn object_name(name: &mut ObjectName) {
    for part in &mut name.0 {
        if let ObjectNamePart::Identifier(i) = part {
            ident(i);
        }
    }
}

struct Normalizer;

impl VisitorMut for Normalizer {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        object_name(relation);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { alias: Some(a), .. }
        | TableFactor::Derived { alias: Some(a), .. } = factor
        {
            ident(&mut a.name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        for item in &mut select.projection {
            match item {
                SelectItem::ExprWithAlias { alias, .. } => ident(alias),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => object_name(n),
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        match e {
            Expr::Identifier(i) => ident(i),
            Expr::CompoundIdentifier(parts) => parts.iter_mut().for_each(ident),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Arrow,
                right,
            } => {
                let base = std::mem::replace(left.as_mut(), Expr::value(Value::Null));
                let right = std::mem::replace(right.as_mut(), Expr::value(Value::Null));
                *e = attach_field(base, right);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Rebuilds `base -> right`. sqlparser binds `->` looser than other operators and to the right, so the
/// field name is the left-most leaf of `right`: `a->b * 2` arrives as `a -> (b * 2)`.
fn attach_field(base: Expr, right: Expr) -> Expr {
    match right {
        Expr::Identifier(field) => get_field(base, &field.value),
        Expr::BinaryOp { left, op, right } => Expr::BinaryOp {
            left: Box::new(attach_field(base, *left)),
            op,
            right,
        },
        Expr::Function(mut f) if f.name.to_string() == "get_field" => {
            if let FunctionArguments::List(list) = &mut f.args
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))) =
                    list.args.first_mut()
            {
                let inner_expr = std::mem::replace(inner, Expr::value(Value::Null));
                *inner = attach_field(base, inner_expr);
            }
            Expr::Function(f)
        }
        other => Expr::BinaryOp {
            left: Box::new(base),
            op: BinaryOperator::Arrow,
            right: Box::new(other),
        },
    }
}

/// `get_field(base, 'FIELD')`: DataFusion's struct field access.
pub fn get_field(base: Expr, field: &str) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("get_field")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![
                FunctionArg::Unnamed(FunctionArgExpr::Expr(base)),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                    Value::SingleQuotedString(field.to_string()),
                ))),
            ],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Normalizes every identifier of a query.
pub fn query(q: &mut Query) {
    let _ = q.visit(&mut Normalizer);
}

/// Normalizes every identifier of an expression.
pub fn expr(e: &mut Expr) {
    let _ = e.visit(&mut Normalizer);
}
