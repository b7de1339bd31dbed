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
            Expr::Function(f)
                if f.name.to_string().eq_ignore_ascii_case("struct")
                    || f.name.to_string().eq_ignore_ascii_case("map") =>
            {
                if let Some(rewritten) = constructor(f) {
                    *e = rewritten;
                }
            }
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

/// Runs after [`Normalizer`] (whose `->` rewrite must see the original tree first): ksqlDB treats a
/// comparison involving NULL as false, not unknown, so comparisons become `coalesce(cmp, false)`.
struct NullComparisons;

impl VisitorMut for NullComparisons {
    type Break = ();

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            op:
                BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq,
            ..
        } = e
        {
            let cmp = std::mem::replace(e, Expr::value(Value::Null));
            *e = call(
                "coalesce",
                vec![
                    Expr::Nested(Box::new(cmp)),
                    Expr::value(Value::Boolean(false)),
                ],
            );
        }
        ControlFlow::Continue(())
    }
}

/// `STRUCT(F := v, ...)` becomes `named_struct('F', v, ...)`; `MAP(k := v, ...)` becomes `make_map(k, v, ...)`.
fn constructor(f: &Function) -> Option<Expr> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let is_struct = f.name.to_string().eq_ignore_ascii_case("struct");
    let mut args = Vec::new();
    for a in &list.args {
        let (name, value) = match a {
            FunctionArg::ExprNamed {
                name,
                arg: FunctionArgExpr::Expr(value),
                ..
            } => (name, value),
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::BinaryOp {
                left,
                op: BinaryOperator::Assignment,
                right,
            })) => (left.as_ref(), right.as_ref()),
            _ => return None,
        };
        let key = match (is_struct, name) {
            (true, Expr::Identifier(i)) => Expr::value(Value::SingleQuotedString(i.value.clone())),
            (true, _) => return None,
            (false, k) => k.clone(),
        };
        args.push(key);
        args.push(value.clone());
    }
    Some(call(
        if is_struct {
            "named_struct"
        } else {
            "make_map"
        },
        args,
    ))
}

/// A call of a DataFusion function.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `get_field(base, 'FIELD')`: DataFusion's struct field access.
pub fn get_field(base: Expr, field: &str) -> Expr {
    call(
        "get_field",
        vec![
            base,
            Expr::value(Value::SingleQuotedString(field.to_string())),
        ],
    )
}

/// Normalizes every identifier of a query.
pub fn query(q: &mut Query) {
    let _ = q.visit(&mut Normalizer);
    let _ = q.visit(&mut NullComparisons);
}

/// Normalizes every identifier of an expression.
pub fn expr(e: &mut Expr) {
    let _ = e.visit(&mut Normalizer);
    let _ = e.visit(&mut NullComparisons);
}
