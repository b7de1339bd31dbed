//! Whether arguments fit one of a function's documented overloads (reference.txt) by ksqlDB's rules
//! of UDF resolution: a parameter takes its own type and, for numbers, the narrower ones (INT →
//! BIGINT → DECIMAL → DOUBLE); nothing becomes a STRING or a BOOLEAN implicitly; a NULL fits any
//! parameter; a type variable (`T`, `K`, `V`) takes the type it first meets, and its later uses
//! must be the same type (or, for numbers, any number); `ANY` takes anything, each time.

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;

use super::reference::Overload;

/// Whether `args` fit one of `overloads`.
pub fn fits_any(overloads: &[Overload], args: &[DataType]) -> bool {
    overloads.iter().any(|o| fits(o, args))
}

/// Whether `args` fit the overload. A variadic parameter (anywhere: TOPK's `others ANY...` comes
/// before its `k INT`) takes any number of the arguments between those of the parameters around it.
pub fn fits(overload: &Overload, args: &[DataType]) -> bool {
    let params = &overload.params;
    let variadic = params.iter().position(|p| p.variadic);
    let fixed = params.len() - usize::from(variadic.is_some());
    if args.len() < fixed || (variadic.is_none() && args.len() > fixed) {
        return false;
    }
    let extra = args.len() - fixed;
    let mut bound = HashMap::new();
    args.iter().enumerate().all(|(i, arg)| {
        let param = match variadic {
            Some(v) if i >= v && i < v + extra => &params[v],
            Some(v) if i >= v + extra => &params[i - extra + 1],
            _ => &params[i],
        };
        takes(param.type_name, arg, &mut bound)
    })
}

/// Whether a parameter written `param` takes a value of type `arg`.
fn takes<'a>(param: &'a str, arg: &DataType, bound: &mut HashMap<&'a str, DataType>) -> bool {
    if arg.is_null() || param == "ANY" {
        return true;
    }
    if is_variable(param) {
        return match bound.get(param) {
            Some(earlier) => same_kind(earlier, arg),
            None => {
                bound.insert(param, arg.clone());
                true
            }
        };
    }
    if let Some(element) = generic(param, "ARRAY<") {
        return match arg {
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                takes(element, f.data_type(), bound)
            }
            _ => false,
        };
    }
    if let Some(entries) = generic(param, "MAP<") {
        let DataType::Map(entry, _) = arg else {
            return false;
        };
        let DataType::Struct(kv) = entry.data_type() else {
            return false;
        };
        let Some((key, value)) = entries.split_once(", ") else {
            return true;
        };
        return kv.len() == 2
            && takes(key, kv[0].data_type(), bound)
            && takes(value, kv[1].data_type(), bound);
    }
    if param.starts_with("STRUCT") {
        return matches!(arg, DataType::Struct(_));
    }
    match param {
        "INT" => matches!(arg, DataType::Int8 | DataType::Int16 | DataType::Int32),
        "BIGINT" => arg.is_integer(),
        "DECIMAL" => arg.is_integer() || arg.is_decimal(),
        "DOUBLE" => arg.is_numeric(),
        "STRING" | "INTERVAL UNIT" => text(arg),
        "BOOLEAN" => matches!(arg, DataType::Boolean),
        "BYTES" => matches!(
            arg,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ),
        "DATE" => matches!(arg, DataType::Date32 | DataType::Date64),
        "TIME" => matches!(arg, DataType::Time32(_) | DataType::Time64(_)),
        "TIMESTAMP" => matches!(arg, DataType::Timestamp(..)),
        // A type the matcher does not know (a lambda): not for it to refuse.
        _ => true,
    }
}

fn text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// `T`, `K`, `V2`: a type variable.
fn is_variable(param: &str) -> bool {
    param.len() <= 2
        && param.starts_with(|c: char| c.is_ascii_uppercase())
        && param[1..].chars().all(|c| c.is_ascii_digit())
}

/// The inside of `ARRAY<...>` (for `prefix` `ARRAY<`).
fn generic<'a>(param: &'a str, prefix: &str) -> Option<&'a str> {
    param.strip_prefix(prefix)?.strip_suffix('>')
}

/// Whether two uses of one type variable agree: the same type, any two numbers, or containers of
/// agreeing elements.
fn same_kind(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        _ if a.is_null() || b.is_null() || a == b => true,
        _ if a.is_numeric() && b.is_numeric() => true,
        _ if text(a) && text(b) => true,
        (DataType::List(x), DataType::List(y)) => same_kind(x.data_type(), y.data_type()),
        (DataType::Struct(_), DataType::Struct(_)) | (DataType::Map(..), DataType::Map(..)) => true,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

#[cfg(test)]
mod tests {
    use super::super::reference::find;
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use std::sync::Arc;

    fn fits_fn(name: &str, args: &[DataType]) -> bool {
        fits_any(&find(name).unwrap().overloads, args)
    }

    #[test]
    fn numbers_widen_but_nothing_becomes_text() {
        assert!(fits_fn("SQRT", &[DataType::Int32]));
        assert!(fits_fn("SQRT", &[DataType::Decimal128(4, 2)]));
        assert!(!fits_fn("SQRT", &[DataType::Utf8]));
        assert!(!fits_fn("UCASE", &[DataType::Boolean]));
        assert!(!fits_fn("SUBSTRING", &[DataType::Utf8, DataType::Int64]));
        assert!(fits_fn("SUBSTRING", &[DataType::Utf8, DataType::Int32]));
        assert!(fits_fn("UCASE", &[DataType::Null]));
    }

    #[test]
    fn arity_variadics_and_type_variables() {
        assert!(!fits_fn("UCASE", &[]));
        assert!(fits_fn(
            "CONCAT",
            &[DataType::Utf8, DataType::Utf8, DataType::Utf8]
        ));
        assert!(!fits_fn("CONCAT", &[DataType::Utf8, DataType::Binary]));
        let ints = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        assert!(fits_fn("ARRAY_CONTAINS", &[ints.clone(), DataType::Int64]));
        assert!(!fits_fn("ARRAY_CONTAINS", &[ints.clone(), DataType::Utf8]));
        assert!(!fits_fn("ARRAY_LENGTH", &[DataType::Utf8]));
        assert!(fits_fn(
            "COALESCE",
            &[DataType::Int32, DataType::Null, DataType::Int64]
        ));
        assert!(!fits_fn("COALESCE", &[DataType::Int32, DataType::Utf8]));
        let topk = |args: &[DataType]| fits_fn("TOPK", args);
        assert!(topk(&[DataType::Int32, DataType::Int32]));
        assert!(topk(&[
            DataType::Int32,
            DataType::Utf8,
            DataType::Float64,
            DataType::Int32
        ]));
        assert!(!topk(&[DataType::Int32, DataType::Utf8]));
    }
}
