//! ksqlDB's typing of `ARRAY[...]` and `MAP(k := v, ...)` with elements of several types, applied to
//! a planned query before DataFusion unifies them: the elements take the type of those that are not
//! literals (numbers widened together; structs take the union of their fields), string literals are
//! read as that type (`'2e1'` as 20) and other literals become text where the type is text. A map's
//! NULL key is the text `null`, as ksqlDB writes it.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, cast, lit};

use crate::value_typing::{
    Element, Misfit, constructor_name, element, is_text, literal, render, struct_union, type_name,
    widen, with_args,
};

/// Types every array and map constructor of the plan as ksqlDB does.
pub fn type_constructors(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        let Some(schema) = node.inputs().first().map(|i| i.schema().clone()) else {
            return Ok(Transformed::no(node));
        };
        node.map_expressions(|e| {
            e.transform_up(|e| match constructor_name(&e) {
                Some("make_array") => typed_array(e, &schema).map(Transformed::yes),
                Some("map") => map_keys(e, &schema).map(Transformed::yes),
                _ => Ok(Transformed::no(e)),
            })
        })
    })
    .map(|t| t.data)
}

fn is_null(e: &Expr) -> bool {
    literal(e).is_some_and(|v| v.is_null())
}

fn is_string_literal(e: &Expr) -> bool {
    literal(e).is_some_and(|v| is_text(&v.data_type()))
}

/// The type the elements take, if any element says.
fn target(args: &[Expr], schema: &DFSchema) -> Option<DataType> {
    let typed: Vec<DataType> = args
        .iter()
        .filter(|a| !is_null(a) && !is_string_literal(a))
        .filter_map(|a| a.get_type(schema).ok())
        .collect();
    if typed.is_empty() {
        return args.iter().any(is_string_literal).then_some(DataType::Utf8);
    }
    if let Some(union) = struct_union(&typed) {
        return Some(union);
    }
    let numbers = typed.into_iter().reduce(|a, b| widen(&a, &b))?;
    if !numbers.is_integer() && !numbers.is_decimal() {
        return Some(numbers);
    }
    // Numeric text counts as the DECIMAL it reads as (`'2e1'` beside a BIGINT makes DECIMAL(19, 0)).
    Some(
        args.iter()
            .filter_map(|a| match literal(a)? {
                v if is_text(&v.data_type()) => decimal_of(&v.to_string()),
                _ => None,
            })
            .fold(numbers, |t, d| widen(&t, &d)),
    )
}

/// The DECIMAL type numeric text reads as: its integer digits and its scale (`'2e1'`: DECIMAL(2, 0)).
fn decimal_of(text: &str) -> Option<DataType> {
    let t = text.trim().trim_start_matches(['+', '-']);
    let (mantissa, exponent) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole_digits = whole.trim_start_matches('0').len().max(1) as i32 + exponent;
    let scale = (fraction.len() as i32 - exponent).max(0);
    let precision = (whole_digits.max(1) + scale).clamp(1, 38);
    Some(DataType::Decimal128(
        precision as u8,
        scale.min(precision) as i8,
    ))
}

fn typed_array(e: Expr, schema: &DFSchema) -> Result<Expr> {
    let Expr::ScalarFunction(f) = &e else {
        return Ok(e);
    };
    let Some(target) = target(&f.args, schema) else {
        return Ok(e);
    };
    let mut args = Vec::with_capacity(f.args.len());
    for a in &f.args {
        if is_null(a) {
            args.push(a.clone());
            continue;
        }
        match element(&target, a.clone(), schema) {
            Ok(Element::Keep(typed)) => {
                let t = typed.get_type(schema)?;
                args.push(if t == target {
                    typed
                } else {
                    cast(typed, target.clone())
                });
            }
            Ok(Element::Never) => args.push(a.clone()),
            Err(Misfit::Text(message)) => return Err(DataFusionError::Plan(message)),
            Err(Misfit::Type) => {
                return Err(DataFusionError::Plan(format!(
                    "Cannot construct an array of {} with {} ({})",
                    type_name(&target),
                    type_name(&a.get_type(schema)?),
                    render(a)
                )));
            }
        }
    }
    Ok(with_args(&e, args))
}

/// `MAP(k := v, ...)` is `map(ARRAY[k, ...], ARRAY[v, ...])`: NULL text keys become `'null'`.
fn map_keys(e: Expr, schema: &DFSchema) -> Result<Expr> {
    let Expr::ScalarFunction(f) = &e else {
        return Ok(e);
    };
    let [Expr::ScalarFunction(keys), values] = f.args.as_slice() else {
        return Ok(e);
    };
    if keys.func.name() != "make_array" {
        return Ok(e);
    }
    let text = keys
        .args
        .iter()
        .filter(|k| !is_null(k))
        .all(|k| k.get_type(schema).is_ok_and(|t| is_text(&t)));
    if !text {
        return Ok(e);
    }
    let named: Vec<Expr> = keys
        .args
        .iter()
        .map(|k| {
            if is_null(k) {
                lit("null")
            } else if literal(k).is_some() {
                k.clone()
            } else {
                datafusion::functions::expr_fn::coalesce(vec![k.clone(), lit("null")])
            }
        })
        .collect();
    let keys = with_args(&f.args[0], named);
    Ok(with_args(&e, vec![keys, values.clone()]))
}
