//! Eddy's golden files (tests/golden) cover every built-in function of the reference: each is
//! called in a case that checks its outputs over inputs holding a NULL, and in a case that expects
//! a statement to be refused (a wrong-type or wrong-arity argument).

use std::path::Path;

use serde_json::Value;

/// Every test case of the JSON files under `dir`.
fn cases(dir: &Path, out: &mut Vec<Value>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            cases(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let file: Value = serde_json::from_str(&text).unwrap();
            out.extend(file["tests"].as_array().into_iter().flatten().cloned());
        }
    }
}

fn holds_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.iter().any(holds_null),
        Value::Object(fields) => fields.values().any(holds_null),
        _ => false,
    }
}

/// Whether a statement of the case calls `name` (`NAME(`, any case, not part of a longer name).
fn calls(case: &Value, name: &str) -> bool {
    let call = format!("{}(", name.to_ascii_uppercase());
    case["statements"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            let text = s
                .as_str()
                .unwrap_or("")
                .to_ascii_uppercase()
                .replace(" (", "(");
            text.match_indices(&call).any(|(at, _)| {
                !text[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
}

#[test]
fn every_function_has_a_case_with_nulls_and_one_refusing_a_wrong_argument() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut all = Vec::new();
    cases(&root, &mut all);
    let mut missing = Vec::new();
    for doc in eddy_sql::functions::reference::reference() {
        let called: Vec<&Value> = all.iter().filter(|c| calls(c, doc.name)).collect();
        let with_nulls = called.iter().any(|c| {
            c["outputs"].as_array().is_some_and(|o| !o.is_empty())
                && c["inputs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|i| holds_null(&i["value"]))
        });
        let refused = called.iter().any(|c| c.get("expectedException").is_some());
        if !with_nulls {
            missing.push(format!("{}: no case with a NULL input", doc.name));
        }
        if !refused {
            missing.push(format!("{}: no case refusing a wrong argument", doc.name));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
