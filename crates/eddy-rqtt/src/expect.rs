//! Comparing a server's answers with a REST case's expectations the way ksqlDB's REST runner does:
//! entities partially (only the keys the expectation names), query rows as a multiset.

use serde_json::Value;

use eddy_golden::compare::difference;

/// Suffix of an expected key that compares the value as a prefix (`"queryId|starts_with": "…"`).
const STARTS_WITH: &str = "|starts_with";

/// The first difference between `expected` and `actual`: objects compare only the keys `expected`
/// names, arrays element by element, scalars with the golden runner's rules (numbers by value).
pub fn partial(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, w)| {
            if let Some(name) = key.strip_suffix(STARTS_WITH) {
                let prefix = w.as_str().unwrap_or_default();
                return match have.get(name).and_then(Value::as_str) {
                    Some(h) if h.starts_with(prefix) => None,
                    other => Some(format!(
                        "{path}.{name}: expected a string starting with {prefix:?} but got {}",
                        show(other)
                    )),
                };
            }
            match have.get(key) {
                Some(h) => partial(w, h, &format!("{path}.{key}")),
                None => Some(format!("{path}.{key}: missing (expected {w})")),
            }
        }),
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return Some(format!(
                    "{path}: expected {} elements but got {}: {actual}",
                    want.len(),
                    have.len()
                ));
            }
            want.iter()
                .zip(have)
                .enumerate()
                .find_map(|(i, (w, h))| partial(w, h, &format!("{path}[{i}]")))
        }
        _ => difference(expected, actual).map(|d| format!("{path}: {d}")),
    }
}

fn show(v: Option<&str>) -> String {
    v.map_or_else(|| "nothing".to_string(), |s| format!("{s:?}"))
}

/// Compares a `/query` response (the parsed v1 array) with the expected `query` elements: the
/// header, the rows as a multiset, and any other element (`finalMessage`, `errorMessage`) the
/// expectation lists.
pub fn query_response(expected: &[Value], actual: &[Value]) -> Option<String> {
    let is_row = |v: &&Value| v.get("row").is_some();
    let want_rows: Vec<&Value> = expected.iter().filter(is_row).collect();
    let mut have_rows: Vec<Option<&Value>> = actual.iter().filter(is_row).map(Some).collect();
    for w in &want_rows {
        let found = have_rows
            .iter_mut()
            .find(|h| h.is_some_and(|h| partial(w, h, "row").is_none()));
        match found {
            Some(slot) => *slot = None,
            None => {
                return Some(format!(
                    "expected row {} is not in the response {}",
                    w["row"],
                    rows_text(actual)
                ));
            }
        }
    }
    if let Some(extra) = have_rows.into_iter().flatten().next() {
        return Some(format!(
            "the response has {} rows, {} expected; an extra one: {}",
            actual.iter().filter(is_row).count(),
            want_rows.len(),
            extra["row"]
        ));
    }
    for w in expected.iter().filter(|v| v.get("row").is_none()) {
        let Some(kind) = w.as_object().and_then(|o| o.keys().next()) else {
            continue;
        };
        let Some(h) = actual.iter().find(|a| a.get(kind).is_some()) else {
            return Some(format!("the response has no {kind}: expected {w}"));
        };
        if let Some(d) = partial(w, h, "") {
            return Some(d);
        }
    }
    None
}

fn rows_text(actual: &[Value]) -> String {
    let rows: Vec<String> = actual
        .iter()
        .filter(|a| a.get("header").is_none())
        .map(|a| match a.get("row") {
            Some(r) => r["columns"].to_string(),
            None => a.to_string(),
        })
        .collect();
    format!("[{}]", rows.join(", "))
}

/// Compares an error answer (HTTP status and body) with `expectedError` (`status`, `message` as a
/// substring, `type`: a statement error or any error).
pub fn error(expected: &Value, status: u16, body: &Value) -> Option<String> {
    if let Some(want) = expected.get("status").and_then(Value::as_u64)
        && want != u64::from(status)
    {
        return Some(format!(
            "expected HTTP status {want} but got {status}: {body}"
        ));
    }
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(want) = expected.get("message").and_then(Value::as_str)
        && !message.contains(want)
    {
        return Some(format!(
            "expected an error containing {want:?} but got {message:?}"
        ));
    }
    let statement_error = body.get("@type").and_then(Value::as_str) == Some("statement_error");
    match expected.get("type").and_then(Value::as_str) {
        Some(t) if t.ends_with("KsqlStatementErrorMessage") && !statement_error => Some(format!(
            "expected a statement error but got {}",
            body.get("@type").unwrap_or(&Value::Null)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_compare_only_the_expected_keys_and_prefixes() {
        let have = json!({"@type": "currentStatus", "commandId": "stream/`X`/create", "queryId": "CTAS_X_1"});
        assert_eq!(partial(&json!({"@type": "currentStatus"}), &have, ""), None);
        assert_eq!(
            partial(&json!({"queryId|starts_with": "CTAS_"}), &have, ""),
            None
        );
        assert!(partial(&json!({"queryId|starts_with": "CSAS_"}), &have, "").is_some());
        assert!(partial(&json!({"@type": "sourceDescription"}), &have, "").is_some());
    }

    #[test]
    fn rows_are_a_multiset_and_the_final_message_is_checked() {
        let expected = [
            json!({"header": {"schema": "`K` STRING"}}),
            json!({"row": {"columns": ["a"]}}),
            json!({"row": {"columns": ["b"]}}),
            json!({"finalMessage": "Limit Reached"}),
        ];
        let mut actual = vec![
            json!({"header": {"queryId": "q", "schema": "`K` STRING"}}),
            json!({"row": {"columns": ["b"]}}),
            json!({"row": {"columns": ["a"]}}),
            json!({"finalMessage": "Limit Reached"}),
        ];
        assert_eq!(query_response(&expected, &actual), None);
        actual[2] = json!({"row": {"columns": ["b"]}});
        assert!(query_response(&expected, &actual).is_some());
        actual.pop();
        actual[2] = json!({"row": {"columns": ["a"]}});
        assert!(
            query_response(&expected, &actual)
                .unwrap()
                .contains("finalMessage")
        );
    }

    #[test]
    fn errors_match_on_status_message_and_kind() {
        let body = json!({"@type": "statement_error", "error_code": 40001, "message": "Pull queries don't support JOIN clauses."});
        let expected = json!({"type": "io.confluent.ksql.rest.entity.KsqlStatementErrorMessage", "message": "JOIN clauses", "status": 400});
        assert_eq!(error(&expected, 400, &body), None);
        assert!(error(&expected, 500, &body).is_some());
        let generic = json!({"@type": "generic_error", "message": "Pull queries don't support JOIN clauses."});
        assert!(error(&expected, 400, &generic).is_some());
    }
}
