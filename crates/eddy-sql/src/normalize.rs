//! ksqlDB's identifier rules applied to sqlparser's AST: unquoted identifiers are upper-cased, quoted ones
//! kept, and all are marked quoted so DataFusion keeps their case; `struct->field` becomes `get_field`;
//! comparisons with NULL are false; numeric literals get ksqlDB's types.

use std::ops::ControlFlow;

use eddy_common::{Error, Result, plan_err};
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, ExactNumberInfo, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgOperator, FunctionArgumentList, FunctionArguments, Ident,
    LambdaFunction, LambdaFunctionParameter, LambdaSyntax, ObjectName, ObjectNamePart,
    OneOrManyWithParens, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, TableFactor,
    UnaryOperator, Value, VisitMut, VisitorMut,
};
use sqlparser::tokenizer::Location;

pub use crate::identifier::ident_name;

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
    type Break = Error;

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<Error> {
        object_name(relation);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        if let TableFactor::Table { alias: Some(a), .. }
        | TableFactor::Derived { alias: Some(a), .. } = factor
        {
            ident(&mut a.name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<Error> {
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

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        if let Expr::Function(f) = e {
            time_unit_argument(f);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        if let Expr::Function(f) = e
            && lambda_function(f)
        {
            return ControlFlow::Continue(());
        }
        match e {
            Expr::Array(array) => {
                const SEE: &str = "(see https://github.com/confluentinc/ksql/issues/4239)";
                if array.elem.is_empty() {
                    return ControlFlow::Break(plan_err!(
                        "Array constructor cannot be empty. Please supply at least one element {SEE}."
                    ));
                }
                if array.elem.iter().all(is_null) {
                    return ControlFlow::Break(plan_err!(
                        "Cannot construct an array with all NULL elements {SEE}. As a workaround, you may cast a NULL value to the desired type."
                    ));
                }
                // A call, not an array literal: DataFusion plans a literal's elements without the
                // lambda parameters in scope (`x => ARRAY[x, 1]` would not find `x`).
                *e = call("make_array", std::mem::take(&mut array.elem));
            }
            Expr::Function(f)
                if f.name.to_string().eq_ignore_ascii_case("struct")
                    || f.name.to_string().eq_ignore_ascii_case("map") =>
            {
                match constructor(f) {
                    Some(Ok(rewritten)) => *e = rewritten,
                    Some(Err(err)) => return ControlFlow::Break(err),
                    None => {}
                }
            }
            Expr::Identifier(i) => ident(i),
            Expr::CompoundIdentifier(parts) => parts.iter_mut().for_each(ident),
            // COUNT(*) counts rows as COUNT(1) does; one spelling lets the planner share them.
            Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("count") => {
                if let FunctionArguments::List(list) = &mut f.args
                    && let [FunctionArg::Unnamed(arg @ FunctionArgExpr::Wildcard)] =
                        list.args.as_mut_slice()
                {
                    *arg = FunctionArgExpr::Expr(Expr::value(Value::Number("1".into(), false)));
                }
            }
            // ksqlDB's SUBSTRING counts positions its own way (functions/substring.rs).
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![std::mem::replace(expr.as_mut(), Expr::value(Value::Null))];
                args.extend(substring_from.take().map(|b| *b));
                args.extend(substring_for.take().map(|b| *b));
                *e = call("substring", args);
            }
            // ksqlDB's TRIM (functions/checked.rs gives it Java's blanks).
            Expr::Trim {
                expr,
                trim_where: None,
                trim_what: None,
                trim_characters: None,
            } => {
                let value = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
                *e = call("trim", vec![value]);
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Arrow,
                right,
            } => {
                let base = std::mem::replace(left.as_mut(), Expr::value(Value::Null));
                let right = std::mem::replace(right.as_mut(), Expr::value(Value::Null));
                *e = attach_to_last_operand(base, right);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Rebuilds `left -> right` where `left` was rewritten already: in `p->x + p->y` sqlparser's
/// `(p -> (x + p)) -> y` arrives here as `(p->x + p) -> y`, and the `-> y` belongs to the last
/// operand, `p`.
fn attach_to_last_operand(left: Expr, right: Expr) -> Expr {
    match left {
        Expr::BinaryOp {
            left: first,
            op,
            right: last,
        } if op != BinaryOperator::Arrow => Expr::BinaryOp {
            left: first,
            op,
            right: Box::new(attach_to_last_operand(*last, right)),
        },
        other => attach_field(other, right),
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
        Expr::CompoundFieldAccess { root, access_chain } => Expr::CompoundFieldAccess {
            root: Box::new(attach_field(base, *root)),
            access_chain,
        },
        Expr::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => Expr::Like {
            negated,
            any,
            expr: Box::new(attach_field(base, *expr)),
            pattern,
            escape_char,
        },
        Expr::IsNull(e) => Expr::IsNull(Box::new(attach_field(base, *e))),
        Expr::IsNotNull(e) => Expr::IsNotNull(Box::new(attach_field(base, *e))),
        Expr::IsDistinctFrom(a, b) => Expr::IsDistinctFrom(Box::new(attach_field(base, *a)), b),
        Expr::IsNotDistinctFrom(a, b) => {
            Expr::IsNotDistinctFrom(Box::new(attach_field(base, *a)), b)
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => Expr::InList {
            expr: Box::new(attach_field(base, *expr)),
            list,
            negated,
        },
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => Expr::Between {
            expr: Box::new(attach_field(base, *expr)),
            negated,
            low,
            high,
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
    type Break = Error;

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        if let Expr::BinaryOp { left, op, right } = e
            && is_null(left)
            && is_null(right)
        {
            return ControlFlow::Break(plan_err!(
                "Comparison with NULL not supported: NULL {op} NULL"
            ));
        }
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

/// `STRUCT(F := v, ...)` becomes `named_struct('F', v, ...)`; `MAP(k := v, ...)` becomes
/// `map(make_array(k, ...), make_array(v, ...))` (the `make_array` of ksqlDB's element typing, not
/// the one DataFusion's `make_map` would call), after ksqlDB's checks of its entries.
fn constructor(f: &Function) -> Option<Result<Expr>> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let is_struct = f.name.to_string().eq_ignore_ascii_case("struct");
    let mut args = Vec::new();
    for a in &list.args {
        let split;
        let (name, value) = match a {
            FunctionArg::ExprNamed {
                name,
                arg: FunctionArgExpr::Expr(value),
                ..
            } => (name, value),
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                split = split_assignment(e)?;
                (&split.0, &split.1)
            }
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
    if is_struct {
        return Some(Ok(call("named_struct", args)));
    }
    let (keys, values): (Vec<Expr>, Vec<Expr>) = args
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .unzip();
    Some(check_map(&keys, &values).map(|()| {
        call(
            "map",
            vec![call("make_array", keys), call("make_array", values)],
        )
    }))
}

/// `name := value` as sqlparser reads it: `:=` binds tighter than the operators after it, so
/// `Q := x + 5` arrives as `(Q := x) + 5`; the name is the leftmost assignment's, the value the
/// rest of the expression.
fn split_assignment(e: &Expr) -> Option<(Expr, Expr)> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Assignment,
            right,
        } => Some((left.as_ref().clone(), right.as_ref().clone())),
        Expr::BinaryOp { left, op, right } => {
            let (name, value) = split_assignment(left)?;
            Some((
                name,
                Expr::BinaryOp {
                    left: Box::new(value),
                    op: op.clone(),
                    right: right.clone(),
                },
            ))
        }
        // `Q := s->d` arrives as `(Q := s)->d`, already `get_field(Q := s, 'D')`.
        Expr::Function(f) if f.name.to_string() == "get_field" => {
            let mut f = f.clone();
            let FunctionArguments::List(list) = &mut f.args else {
                return None;
            };
            let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(base))) = list.args.first_mut()
            else {
                return None;
            };
            let (name, value) = split_assignment(base)?;
            *base = value;
            Some((name, Expr::Function(f)))
        }
        _ => None,
    }
}

/// ksqlDB's lambdas, `TRANSFORM(a, x => x + 1)`, `FILTER(m, (k, v) => v > 0)`,
/// `REDUCE(a, 0, (s, x) => s + x)`, arrive as named arguments `params => body`; they become lambdas of
/// Eddy's higher-order `transform`, `filter` and `reduce` (over arrays and maps).
/// Returns whether `f` was such a call.
fn lambda_function(f: &mut Function) -> bool {
    let target = match f.name.to_string().to_ascii_uppercase().as_str() {
        "TRANSFORM" => "transform",
        "FILTER" => "filter",
        "REDUCE" => "reduce",
        _ => return false,
    };
    let FunctionArguments::List(list) = &mut f.args else {
        return false;
    };
    let mut rewritten = false;
    for arg in &mut list.args {
        if let FunctionArg::ExprNamed {
            name,
            arg: FunctionArgExpr::Expr(body),
            operator: FunctionArgOperator::RightArrow,
        } = arg
        {
            let Some(params) = lambda_parameters(name) else {
                continue;
            };
            let lambda = Expr::Lambda(LambdaFunction {
                params,
                body: Box::new(std::mem::replace(body, Expr::value(Value::Null))),
                syntax: LambdaSyntax::Arrow,
            });
            *arg = FunctionArg::Unnamed(FunctionArgExpr::Expr(lambda));
            rewritten = true;
        }
    }
    if rewritten {
        f.name = ObjectName::from(vec![Ident::new(target)]);
    }
    rewritten
}

/// A lambda's parameters: `x`, `(x)` or `(x, y, ...)`.
fn lambda_parameters(names: &Expr) -> Option<OneOrManyWithParens<LambdaFunctionParameter>> {
    let param = |e: &Expr| match e {
        Expr::Identifier(name) => Some(LambdaFunctionParameter {
            name: name.clone(),
            data_type: None,
        }),
        _ => None,
    };
    match names {
        Expr::Identifier(_) => param(names).map(OneOrManyWithParens::One),
        Expr::Nested(inner) => param(inner).map(|p| OneOrManyWithParens::Many(vec![p])),
        Expr::Tuple(items) => items
            .iter()
            .map(param)
            .collect::<Option<Vec<_>>>()
            .map(OneOrManyWithParens::Many),
        _ => None,
    }
}

/// The bare time unit of `DATEADD(DAYS, 1, d)` and its kin becomes a string literal, `'DAYS'`.
fn time_unit_argument(f: &mut Function) {
    let name = f.name.to_string().to_ascii_lowercase();
    if !crate::functions::date_arithmetic::NAMES.contains(&name.as_str()) {
        return;
    }
    if let FunctionArguments::List(list) = &mut f.args
        && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
        && let Expr::Identifier(unit) = first
        && unit.quote_style.is_none()
        && crate::window::unit_millis(&unit.value).is_some()
    {
        *first = Expr::value(Value::SingleQuotedString(unit.value.to_ascii_uppercase()));
    }
}

fn is_null(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if v.value == Value::Null)
}

/// ksqlDB's checks of `MAP(k := v, ...)`'s keys and values.
fn check_map(keys: &[Expr], values: &[Expr]) -> Result<()> {
    if keys.is_empty() {
        return Err(plan_err!(
            "Map constructor cannot be empty. Please supply at least one key value pair (see https://github.com/confluentinc/ksql/issues/4239)."
        ));
    }
    if keys.iter().all(is_null) {
        return Err(plan_err!("Cannot construct a map with all NULL keys"));
    }
    if values.iter().all(is_null) {
        return Err(plan_err!("Cannot construct a map with all NULL values"));
    }
    Ok(())
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
/// The field name `s->*` is parsed into: the planner expands it into every field of `s`.
pub const STRUCT_STAR: &str = "<STRUCT_STAR>";

pub fn get_field(base: Expr, field: &str) -> Expr {
    call(
        "get_field",
        vec![
            base,
            Expr::value(Value::SingleQuotedString(field.to_string())),
        ],
    )
}

/// ksqlDB's numeric literals: an integer is an INT when it fits 32 bits and a BIGINT when it fits 64; a
/// number with a decimal point is a DECIMAL of its digits; one with an exponent is a DOUBLE.
struct Literals;

impl VisitorMut for Literals {
    type Break = Error;

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        // A negative literal is one number (so that -2147483648 is an INT and the overflow message
        // shows the sign).
        if let Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } = e
            && let Expr::Value(v) = expr.as_ref()
            && let Value::Number(n, long) = &v.value
        {
            let span = v.span;
            *e = Expr::Value(Value::Number(format!("-{n}"), *long).with_span(span));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        if let Expr::Value(v) = e
            && let Value::Number(n, _) = &v.value
        {
            match typed_number(n) {
                Ok(Some(typed)) => *e = typed,
                Ok(None) => {}
                Err(why) => return ControlFlow::Break(literal_error(v.span.start, &why)),
            }
        }
        ControlFlow::Continue(())
    }
}

/// A literal that no type holds, as ksqlDB words it: with the literal's place in the script when
/// the parser kept it. ksqlDB numbers an expression's column one past its first character (its
/// syntax errors point at the character itself), and so does this message.
fn literal_error(at: Location, why: &str) -> Error {
    match at.line {
        0 => plan_err!("{why}"),
        line => plan_err!(
            "Failed to prepare statement: line {line}:{}: {why}",
            at.column + 1
        ),
    }
}

/// The literal with ksqlDB's type made explicit, if DataFusion would type it differently; the
/// error says why no type holds it.
fn typed_number(n: &str) -> std::result::Result<Option<Expr>, String> {
    let cast = |value: Expr, data_type: DataType| Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(value),
        data_type,
        array: false,
        format: None,
    };
    if n.contains(['e', 'E']) {
        return match n.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(None),
            _ => Err(format!("Number overflows DOUBLE: {n}")),
        };
    }
    if let Some((int, frac)) = n.split_once('.') {
        let digits = int.trim_start_matches(['-', '+']).trim_start_matches('0');
        let scale = frac.len() as u64;
        let precision = (digits.len() as u64 + scale).max(scale).max(1);
        if precision > 38 {
            return Ok(None);
        }
        let decimal =
            DataType::Decimal(ExactNumberInfo::PrecisionAndScale(precision, scale as i64));
        let text = Expr::value(Value::SingleQuotedString(n.to_string()));
        return Ok(Some(Expr::Nested(Box::new(cast(text, decimal)))));
    }
    match n.parse::<i128>() {
        Ok(v) if i32::try_from(v).is_ok() => Ok(Some(Expr::Nested(Box::new(cast(
            Expr::value(Value::Number(n.to_string(), false)),
            DataType::Int(None),
        ))))),
        Ok(v) if i64::try_from(v).is_ok() => Ok(None),
        _ => Err(format!("Invalid numeric literal: {n}")),
    }
}

/// ksqlDB refuses arithmetic on a NULL literal (its type is unknown): `1 + NULL` is an error naming
/// both operand types, where the other operand's type shows from its literal form.
struct NullArithmetic;

impl VisitorMut for NullArithmetic {
    type Break = Error;

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<Error> {
        if let Expr::BinaryOp {
            left,
            op:
                BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo,
            right,
        } = e
            && (is_null(left) || is_null(right))
            && let (Some(l), Some(r)) = (literal_type(left), literal_type(right))
        {
            return ControlFlow::Break(plan_err!(
                "Error processing expression: {}. Arithmetic on types {l} and {r} are not supported.",
                crate::render::ksql_text(e)
            ));
        }
        ControlFlow::Continue(())
    }
}

/// The ksqlDB type of a literal (`null` for NULL), when the expression is one.
pub(crate) fn literal_type(e: &Expr) -> Option<String> {
    Some(match e {
        Expr::Nested(x) => return literal_type(x),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => return literal_type(expr),
        Expr::Value(v) => match &v.value {
            Value::Null => "null".into(),
            Value::Boolean(_) => "BOOLEAN".into(),
            Value::SingleQuotedString(_) => "STRING".into(),
            Value::Number(n, _) if n.contains(['e', 'E']) => "DOUBLE".into(),
            Value::Number(n, _) => match n.split_once('.') {
                Some((int, frac)) => {
                    let digits = int.trim_start_matches(['-', '+']).trim_start_matches('0');
                    let precision = (digits.len() + frac.len()).max(1);
                    format!("DECIMAL({precision}, {})", frac.len())
                }
                None if n.parse::<i32>().is_ok() => "INTEGER".into(),
                None => "BIGINT".into(),
            },
            _ => return None,
        },
        Expr::Array(a) => format!(
            "ARRAY<{}>",
            a.elem.iter().find(|x| !is_null(x)).and_then(literal_type)?
        ),
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("map") => {
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            let (k, v) = list.args.iter().find_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Assignment,
                    right,
                })) => Some((literal_type(left)?, literal_type(right)?)),
                _ => None,
            })?;
            format!("MAP<{k}, {v}>")
        }
        _ => return None,
    })
}

/// Normalizes a query: identifiers, field access, NULL comparisons and literal types (not in `LIMIT`).
pub fn query(q: &mut Query) -> Result<()> {
    done(q.visit(&mut NullArithmetic))?;
    done(q.visit(&mut Normalizer))?;
    done(q.visit(&mut NullComparisons))?;
    let limit = q.limit_clause.take();
    let typed = q.visit(&mut Literals);
    q.limit_clause = limit;
    done(typed)
}

/// The error a visitor broke off with, if it did.
pub(crate) fn done(flow: ControlFlow<Error>) -> Result<()> {
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Normalizes an expression like [`query`] does.
pub fn expr(e: &mut Expr) -> Result<()> {
    done(e.visit(&mut Normalizer))?;
    done(e.visit(&mut NullComparisons))?;
    done(e.visit(&mut Literals))
}
