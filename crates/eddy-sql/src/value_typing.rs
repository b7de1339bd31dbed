//! ksqlDB's typing of a value against the type it must have, shared by IN lists and collection
//! constructors: numbers fit numbers, a string literal is read as the type (`'4.000'` as a number,
//! `'tr'` as a BOOLEAN), any literal is text where text is wanted, and array, map and struct
//! constructors are typed element by element (a struct constructor naming a field the type lacks can
//! never equal a value of it; one missing a field has it NULL).

use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, cast, lit};

use crate::java::format_double;
use crate::types::SqlType;

/// Why an element does not fit.
pub enum Misfit {
    /// Of another type: reported for the whole element.
    Type,
    /// Text that does not read as the value's type.
    Text(String),
}

/// What an element becomes.
pub enum Element {
    Keep(Expr),
    /// It can never equal the value (a struct with a field the value lacks).
    Never,
}

/// The type ksqlDB compares two numbers as: DOUBLE with a DOUBLE, else a DECIMAL holding both (INT
/// as DECIMAL(10, 0), BIGINT as DECIMAL(19, 0)) when either is one, else the wider integer.
pub fn widen(a: &DataType, b: &DataType) -> DataType {
    let digits = |t: &DataType| match t {
        DataType::Decimal128(p, s) => Some((i16::from(*p) - i16::from(*s), i16::from(*s))),
        DataType::Int64 => Some((19, 0)),
        t if t.is_integer() => Some((10, 0)),
        _ => None,
    };
    if !is_number(a) || !is_number(b) || a == b {
        return a.clone();
    }
    if a.is_floating() || b.is_floating() {
        return DataType::Float64;
    }
    if a.is_decimal() || b.is_decimal() {
        if let (Some((ia, sa)), Some((ib, sb))) = (digits(a), digits(b)) {
            let scale = sa.max(sb);
            let precision = (ia.max(ib) + scale).min(38);
            return DataType::Decimal128(precision as u8, scale as i8);
        }
        return a.clone();
    }
    if a == &DataType::Int64 || b == &DataType::Int64 {
        DataType::Int64
    } else {
        a.clone()
    }
}

/// The struct that holds every struct of `types` (NULLs aside) as ksqlDB unifies them: the union of
/// their fields in order of appearance, a field's numbers widened; `None` unless all are structs.
pub fn struct_union<'a>(types: impl IntoIterator<Item = &'a DataType>) -> Option<DataType> {
    let mut fields: Vec<Field> = Vec::new();
    let mut any = false;
    for t in types {
        match t {
            DataType::Null => continue,
            DataType::Struct(fs) => {
                any = true;
                for f in fs.iter() {
                    match fields.iter_mut().find(|g| g.name() == f.name()) {
                        Some(g) => {
                            *g = g
                                .clone()
                                .with_data_type(widen(g.data_type(), f.data_type()))
                        }
                        None => fields.push(f.as_ref().clone().with_nullable(true)),
                    }
                }
            }
            _ => return None,
        }
    }
    any.then(|| DataType::Struct(Fields::from(fields)))
}

pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Null => "null".to_string(),
        t => SqlType::from_arrow(t).map_or_else(|_| t.to_string(), |s| s.to_string()),
    }
}

/// The value of a literal, possibly cast (how typed literals are planned).
pub fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Cast(c) => literal(&c.expr)?.cast_to(c.field.data_type()).ok(),
        _ => None,
    }
}

pub fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

fn is_number(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || t.is_decimal()
}

fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Time32(_)
    )
}

/// Whether values of the two types can be compared.
fn comparable(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        _ if a == b => true,
        (DataType::Null, _) | (_, DataType::Null) => true,
        _ if is_number(a) && is_number(b) => true,
        _ if is_text(a) && is_text(b) => true,
        _ if (is_temporal(a) && is_text(b)) || (is_text(a) && is_temporal(b)) => true,
        (DataType::List(x), DataType::List(y)) => comparable(x.data_type(), y.data_type()),
        (DataType::Map(x, _), DataType::Map(y, _)) => comparable(x.data_type(), y.data_type()),
        (DataType::Struct(x), DataType::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(f, g)| f.name() == g.name() && comparable(f.data_type(), g.data_type()))
        }
        _ => false,
    }
}

pub fn element(value: &DataType, e: Expr, schema: &DFSchema) -> Result<Element, Misfit> {
    if let Some(v) = literal(&e).filter(|v| !v.is_null()) {
        let text = match &v {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => Some(s.as_str()),
            _ => None,
        };
        match text {
            Some(s) if !is_text(value) => return read_text(value, s, e.clone()),
            None if is_text(value) => {
                return literal_text(&v)
                    .map(|t| Element::Keep(lit(t)))
                    .ok_or(Misfit::Type);
            }
            _ => {}
        }
    }
    if let (Some(args), Some(name)) = (constructor_args(&e), constructor_name(&e)) {
        match (value, name) {
            (DataType::List(item), "make_array") => {
                let mut out = Vec::with_capacity(args.len());
                for a in args {
                    match element(item.data_type(), a.clone(), schema)? {
                        Element::Keep(a) => out.push(a),
                        Element::Never => return Ok(Element::Never),
                    }
                }
                return Ok(Element::Keep(with_args(&e, out)));
            }
            (DataType::Struct(fields), "named_struct") => {
                return typed_struct(fields, args, &e, schema);
            }
            // MAP(k := v, ...) is planned as map(ARRAY[k, ...], ARRAY[v, ...]).
            (DataType::Map(entries, _), "make_map" | "map") => {
                if let (DataType::Struct(kv), [keys, values]) = (entries.data_type(), args) {
                    let list = |t: &DataType| DataType::new_list(t.clone(), true);
                    let keys = element(&list(kv[0].data_type()), keys.clone(), schema)?;
                    let values = element(&list(kv[1].data_type()), values.clone(), schema)?;
                    return Ok(match (keys, values) {
                        (Element::Keep(k), Element::Keep(v)) => {
                            Element::Keep(with_args(&e, vec![k, v]))
                        }
                        _ => Element::Never,
                    });
                }
            }
            _ => {}
        }
    }
    let given = e.get_type(schema).map_err(|_| Misfit::Type)?;
    if comparable(value, &given) {
        Ok(Element::Keep(e))
    } else {
        Err(Misfit::Type)
    }
}

/// `STRUCT(A := 1, ...)` against a struct value: its fields in the value's order, the missing ones NULL;
/// a field the value lacks means it never matches.
fn typed_struct(
    fields: &Fields,
    args: &[Expr],
    e: &Expr,
    schema: &DFSchema,
) -> Result<Element, Misfit> {
    let mut given: Vec<(String, &Expr)> = Vec::new();
    for pair in args.chunks(2) {
        let [name, value] = pair else {
            return Err(Misfit::Type);
        };
        let Some(ScalarValue::Utf8(Some(name))) = literal(name) else {
            return Err(Misfit::Type);
        };
        given.push((name, value));
    }
    if given
        .iter()
        .any(|(name, _)| !fields.iter().any(|f| f.name() == name))
    {
        return Ok(Element::Never);
    }
    let mut out = Vec::with_capacity(fields.len() * 2);
    for f in fields.iter() {
        out.push(lit(f.name().as_str()));
        match given.iter().find(|(name, _)| name == f.name()) {
            Some((_, v)) => match element(f.data_type(), (*v).clone(), schema)? {
                Element::Keep(v) => out.push(v),
                Element::Never => return Ok(Element::Never),
            },
            None => out.push(cast(lit(ScalarValue::Null), f.data_type().clone())),
        }
    }
    Ok(Element::Keep(with_args(e, out)))
}

/// A string literal read as the value's type.
fn read_text(value: &DataType, s: &str, e: Expr) -> Result<Element, Misfit> {
    let bad = || {
        let kind = SqlType::from_arrow(value).map_or("?", |t| t.kind_name());
        Misfit::Text(format!("invalid input syntax for type {kind}: \"{s}\"."))
    };
    if value == &DataType::Boolean {
        return boolean(s).map(|b| Element::Keep(lit(b))).ok_or_else(bad);
    }
    if is_number(value) {
        let t = s.trim();
        if let Ok(n) = t.parse::<i64>() {
            return Ok(Element::Keep(lit(n)));
        }
        return match t.parse::<f64>() {
            // Digits and an exponent; not `NaN` or `inf`, which Rust reads too.
            Ok(f)
                if f.is_finite()
                    && !t
                        .chars()
                        .any(|c| c.is_alphabetic() && !matches!(c, 'e' | 'E')) =>
            {
                Ok(Element::Keep(lit(f)))
            }
            _ => Err(bad()),
        };
    }
    if matches!(
        value,
        DataType::List(_) | DataType::Map(..) | DataType::Struct(_)
    ) {
        return Err(Misfit::Type);
    }
    Ok(Element::Keep(e))
}

/// ksqlDB's reading of text as a BOOLEAN: any start of `true` or `yes` is true, of `false` or `no`
/// false, in any case.
fn boolean(s: &str) -> Option<bool> {
    let lower = s.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return None;
    }
    if "true".starts_with(&lower) || "yes".starts_with(&lower) {
        Some(true)
    } else if "false".starts_with(&lower) || "no".starts_with(&lower) {
        Some(false)
    } else {
        None
    }
}

/// A literal as the text it is compared as beside a STRING.
pub fn literal_text(v: &ScalarValue) -> Option<String> {
    Some(match v {
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Float64(Some(f)) => format_double(*f),
        ScalarValue::Float32(Some(f)) => format_double(f64::from(*f)),
        v if v.data_type().is_integer() || v.data_type().is_decimal() => v.to_string(),
        _ => return None,
    })
}

pub fn constructor_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::ScalarFunction(f) => Some(f.func.name()),
        _ => None,
    }
}

fn constructor_args(e: &Expr) -> Option<&[Expr]> {
    match e {
        Expr::ScalarFunction(f) => Some(&f.args),
        _ => None,
    }
}

pub fn with_args(e: &Expr, args: Vec<Expr>) -> Expr {
    match e {
        Expr::ScalarFunction(f) => Expr::ScalarFunction(ScalarFunction {
            func: f.func.clone(),
            args,
        }),
        other => other.clone(),
    }
}

/// An element as ksqlDB prints it in messages: `VAL0`, `10`, `ARRAY[VAL1]`, `MAP('a':=VAL1)`,
/// `STRUCT(F0:=VAL1)`, `ARRAY_LENGTH(VAL0)`.
pub fn render(e: &Expr) -> String {
    let list = |args: &[Expr]| args.iter().map(render).collect::<Vec<_>>().join(", ");
    let pairs = |args: &[Expr], key: &dyn Fn(&Expr) -> String| {
        args.chunks(2)
            .map(|p| match p {
                [k, v] => format!("{}:={}", key(k), render(v)),
                other => list(other),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(v) = literal(e) {
        return match v {
            ScalarValue::Utf8(Some(s)) => format!("'{s}'"),
            v if v.is_null() => "null".to_string(),
            v => literal_text(&v).unwrap_or_else(|| v.to_string()),
        };
    }
    match e {
        Expr::Column(c) => c.name.clone(),
        Expr::Alias(a) => render(&a.expr),
        Expr::ScalarFunction(f) => match f.func.name() {
            "make_array" => format!("ARRAY[{}]", list(&f.args)),
            "named_struct" => format!(
                "STRUCT({})",
                pairs(&f.args, &|k| match literal(k) {
                    Some(ScalarValue::Utf8(Some(name))) => name,
                    _ => render(k),
                })
            ),
            "make_map" | "map" => match f.args.as_slice() {
                [Expr::ScalarFunction(k), Expr::ScalarFunction(v)]
                    if k.func.name() == "make_array" && v.func.name() == "make_array" =>
                {
                    let entries: Vec<String> = k
                        .args
                        .iter()
                        .zip(&v.args)
                        .map(|(k, v)| format!("{}:={}", render(k), render(v)))
                        .collect();
                    format!("MAP({})", entries.join(", "))
                }
                args => format!("MAP({})", pairs(args, &render)),
            },
            name => format!("{}({})", name.to_uppercase(), list(&f.args)),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reads_as_booleans_the_way_ksqldb_reads_it() {
        for t in ["TrUe", "tr", "Y", "yes", "t"] {
            assert_eq!(boolean(t), Some(true), "{t}");
        }
        for f in ["false", "F", "no", "n"] {
            assert_eq!(boolean(f), Some(false), "{f}");
        }
        for bad in ["", "Not a boolean", "truest", "yess"] {
            assert_eq!(boolean(bad), None, "{bad}");
        }
    }
}
