//! ksqlDB's JSON string functions: `EXTRACTJSONFIELD(json, '$.path')`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use serde_json::Value;

use super::{rows_of, strings_of};

/// `EXTRACTJSONFIELD(json STRING, path STRING) -> STRING`: the value at a JSONPath (`$.a.b`, `$.a[0]`,
/// `$['a b']`, negative indexes from the end); a string comes back unquoted, anything else as JSON text;
/// NULL if the text is not JSON or nothing is there.
pub fn extractjsonfield() -> ScalarUDF {
    create_udf(
        "extractjsonfield",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let json = strings_of(&args[0], rows)?;
            let path = strings_of(&args[1], rows)?;
            let mut out = StringBuilder::new();
            for (j, p) in json.iter().zip(path.iter()) {
                out.append_option(j.zip(p).and_then(|(j, p)| extract(j, p)));
            }
            let out: ArrayRef = Arc::new(out.finish());
            Ok(ColumnarValue::Array(out))
        }),
    )
}

/// The value at `path` in the JSON text `json`, as EXTRACTJSONFIELD returns it.
pub fn extract(json: &str, path: &str) -> Option<String> {
    let root: Value = serde_json::from_str(json).ok()?;
    let mut current = &root;
    for step in parse_path(path)? {
        current = match (step, current) {
            (Step::Field(name), Value::Object(m)) => m.get(&name)?,
            (Step::Index(i), Value::Array(items)) => {
                let i = if i < 0 { items.len() as i64 + i } else { i };
                items.get(usize::try_from(i).ok()?)?
            }
            _ => return None,
        };
    }
    match current {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

enum Step {
    Field(String),
    Index(i64),
}

/// `$.a.b[0]['c d']` as steps; `None` if it is not a path.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            steps.push(Step::Field(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inside = r[..end].trim();
            let quoted = inside
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            steps.push(match quoted {
                Some(name) => Step::Field(name.to_string()),
                None => Step::Index(inside.parse().ok()?),
            });
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::extract;

    #[test]
    fn paths_reach_fields_and_elements() {
        let j = r#"{"a":{"b":[1,{"c":"x"}]},"n":null,"@type":"t","s p":2}"#;
        assert_eq!(extract(j, "$.a.b[1].c").as_deref(), Some("x"));
        assert_eq!(extract(j, "$.a.b[-2]").as_deref(), Some("1"));
        assert_eq!(extract(j, "$.a").as_deref(), Some(r#"{"b":[1,{"c":"x"}]}"#));
        assert_eq!(extract(j, "$['s p']").as_deref(), Some("2"));
        assert_eq!(extract(j, "$.@type").as_deref(), Some("t"));
        assert_eq!(extract(j, "$.n"), None);
        assert_eq!(extract(j, "$.missing"), None);
        assert_eq!(extract("not json", "$.a"), None);
    }
}
