//! ksqlDB's functions over JSON text: `EXTRACTJSONFIELD(json, '$.path')`, `IS_JSON_STRING`,
//! `JSON_ARRAY_LENGTH`, `JSON_KEYS`, `JSON_ITEMS`, `JSON_RECORDS`, `JSON_CONCAT`. Objects keep their
//! keys in the order of the text.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Int32Builder, ListBuilder, MapBuilder, MapFieldNames,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use serde_json::Value;

use super::{over_text, rows_of, strings_of};
use crate::types::SqlType;

/// The JSON functions of one string argument, for registration.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        extractjsonfield(),
        over_text("is_json_string", DataType::Boolean, |texts| {
            let mut out = BooleanBuilder::with_capacity(texts.len());
            for t in texts.iter() {
                out.append_value(t.and_then(parse).is_some());
            }
            Arc::new(out.finish())
        }),
        over_text("json_array_length", DataType::Int32, |texts| {
            let mut out = Int32Builder::with_capacity(texts.len());
            for t in texts.iter() {
                out.append_option(match t.and_then(parse) {
                    Some(Value::Array(items)) => i32::try_from(items.len()).ok(),
                    _ => None,
                });
            }
            Arc::new(out.finish())
        }),
        over_text("json_keys", strings_type(), |texts| {
            let mut out = ListBuilder::new(StringBuilder::new());
            for t in texts.iter() {
                match t.and_then(parse) {
                    Some(Value::Object(fields)) => {
                        out.append_value(fields.keys().map(Some));
                    }
                    _ => out.append_null(),
                }
            }
            Arc::new(out.finish())
        }),
        over_text("json_items", strings_type(), |texts| {
            let mut out = ListBuilder::new(StringBuilder::new());
            for t in texts.iter() {
                match t.and_then(parse) {
                    Some(Value::Array(items)) => {
                        out.append_value(items.iter().map(|v| Some(v.to_string())));
                    }
                    _ => out.append_null(),
                }
            }
            Arc::new(out.finish())
        }),
        over_text(
            "json_records",
            SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::String)).to_arrow(),
            |texts| {
                let names = MapFieldNames {
                    entry: "entries".into(),
                    key: "key".into(),
                    value: "value".into(),
                };
                let mut out =
                    MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
                for t in texts.iter() {
                    match t.and_then(parse) {
                        Some(Value::Object(fields)) => {
                            for (k, v) in fields {
                                out.keys().append_value(k);
                                match v {
                                    Value::String(text) => out.values().append_value(text),
                                    other => out.values().append_value(other.to_string()),
                                }
                            }
                            // Appending only fails when keys and values differ in number.
                            let _ = out.append(true);
                        }
                        _ => {
                            let _ = out.append(false);
                        }
                    }
                }
                Arc::new(out.finish())
            },
        ),
        ScalarUDF::from(JsonConcat::default()),
    ]
}

/// `ARRAY<STRING>` as Eddy stores it.
fn strings_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The text as JSON, if it is JSON.
fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// `JSON_CONCAT(json1, json2, ...)`: objects merged (later keys win); otherwise arrays concatenated,
/// with any other value taken as a one-element array. NULL if any argument is NULL or not JSON.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonConcat {
    signature: Signature,
}

impl Default for JsonConcat {
    fn default() -> Self {
        JsonConcat {
            signature: Signature::variadic(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonConcat {
    fn name(&self) -> &str {
        "json_concat"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|a| strings_of(a, rows))
            .collect::<Result<Vec<_>>>()?;
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let values: Option<Vec<Value>> = texts
                .iter()
                .map(|t| (!t.is_null(row)).then(|| parse(t.value(row))).flatten())
                .collect();
            out.append_option(values.map(|v| concat(v).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// JSON values concatenated as `JSON_CONCAT` does.
fn concat(values: Vec<Value>) -> Value {
    if values.iter().all(Value::is_object) {
        let mut merged = serde_json::Map::new();
        for v in values {
            if let Value::Object(fields) = v {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    let mut items = Vec::new();
    for v in values {
        match v {
            Value::Array(a) => items.extend(a),
            other => items.push(other),
        }
    }
    Value::Array(items)
}

/// `EXTRACTJSONFIELD(json STRING, path STRING) -> STRING`: the value at a JSONPath (`$.a.b`, `$.a[0]`,
/// `$['a b']`, negative indexes from the end); a string comes back unquoted, anything else as JSON text;
/// NULL if the text is not JSON or nothing is there.
fn extractjsonfield() -> ScalarUDF {
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
    use super::{concat, extract};

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

    #[test]
    fn concatenation_merges_objects_and_appends_to_arrays() {
        let p = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
        assert_eq!(
            concat(vec![p(r#"{"b":1,"a":2}"#), p(r#"{"a":3,"c":4}"#)]).to_string(),
            r#"{"b":1,"a":3,"c":4}"#
        );
        assert_eq!(
            concat(vec![p("[1,2]"), p(r#"{"a":1}"#), p("3")]).to_string(),
            r#"[1,2,{"a":1},3]"#
        );
    }
}
