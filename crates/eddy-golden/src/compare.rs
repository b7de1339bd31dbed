//! ksqlDB's rules for comparing an expected test value with an actual one: field lookup by name then
//! upper-cased name, numbers with a tolerance for doubles, decimals given as strings.

use serde_json::Value;

/// Why two values differ, or `None` if they match.
pub fn difference(expected: &Value, actual: &Value) -> Option<String> {
    let matches = match (expected, actual) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => numbers_match(a, b),
        (Value::String(a), Value::Number(b)) => a
            .parse::<f64>()
            .ok()
            .zip(b.as_f64())
            .is_some_and(|(x, y)| (x - y).abs() < 1e-9),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!("expected {expected} but got {actual}"));
            }
            return a.iter().zip(b).find_map(|(x, y)| difference(x, y));
        }
        (Value::Object(a), Value::Object(b)) => {
            if a.len() != b.len() {
                return Some(format!("expected {expected} but got {actual}"));
            }
            for (k, v) in a {
                let found = b.get(k).or_else(|| b.get(&k.to_uppercase()));
                match found {
                    Some(x) => {
                        if let Some(d) = difference(v, x) {
                            return Some(format!("field {k}: {d}"));
                        }
                    }
                    // A missing field reads as null, as in ksqlDB's map lookup.
                    None if v.is_null() => {}
                    None => return Some(format!("expected {expected} but got {actual}")),
                }
            }
            true
        }
        _ => false,
    };
    if matches {
        None
    } else {
        Some(format!("expected {expected} but got {actual}"))
    }
}

fn numbers_match(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-6 || (x.is_nan() && y.is_nan()),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_fall_back_to_upper_case_and_doubles_have_tolerance() {
        assert_eq!(
            difference(
                &json!({"id": 1, "v": 0.1}),
                &json!({"ID": 1, "V": 0.10000000001})
            ),
            None
        );
        assert!(difference(&json!({"id": 1}), &json!({"ID": 2})).is_some());
        assert!(difference(&json!({"id": 1}), &json!({"ID": 1, "X": 2})).is_some());
        assert_eq!(difference(&json!("1.50"), &json!(1.5)), None);
        assert!(difference(&json!(1), &json!("1")).is_some());
    }
}
