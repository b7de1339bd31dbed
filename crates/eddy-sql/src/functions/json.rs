//! ksqlDB's functions over JSON text: `EXTRACTJSONFIELD(json, '$.path')`, `IS_JSON_STRING`,
//! `JSON_ARRAY_CONTAINS`, `JSON_ARRAY_LENGTH`, `JSON_KEYS`, `JSON_ITEMS`, `JSON_RECORDS`, `JSON_CONCAT`. Objects keep their
//! keys in the order of the text.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Int32Builder, ListBuilder, MapBuilder, MapFieldNames,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use serde_json::Value;

use super::json_path::extract;
use super::{over_text, overloaded, rows_of, strings_of};
use crate::types::SqlType;

/// The JSON functions of one string argument, for registration.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        extractjsonfield(),
        json_array_contains(),
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
/// `JSON_ARRAY_CONTAINS(json, value) -> BOOLEAN`: whether the JSON text is an array holding the value
/// (numbers equal as numbers); false when it is not an array or not JSON.
fn json_array_contains() -> ScalarUDF {
    let forms = [
        DataType::Int32,
        DataType::Int64,
        DataType::Float64,
        DataType::Utf8,
        DataType::Boolean,
    ]
    .into_iter()
    .map(|t| vec![DataType::Utf8, t])
    .collect();
    overloaded(
        "json_array_contains",
        forms,
        DataType::Boolean,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = rows_of(args);
            let texts = strings_of(&args[0], rows)?;
            let values = args[1].to_array(rows)?;
            let mut out = BooleanBuilder::with_capacity(rows);
            for (i, t) in texts.iter().enumerate() {
                let wanted = ScalarValue::try_from_array(&values, i)?;
                let found = match t.and_then(parse) {
                    Some(Value::Array(items)) => items.iter().any(|item| same(item, &wanted)),
                    _ => false,
                };
                out.append_value(found);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// Whether a JSON value is the SQL value.
fn same(item: &Value, wanted: &ScalarValue) -> bool {
    match (item, wanted) {
        (Value::Null, w) => w.is_null(),
        (Value::Bool(b), ScalarValue::Boolean(Some(w))) => b == w,
        (Value::String(s), ScalarValue::Utf8(Some(w))) => s == w,
        (Value::Number(n), ScalarValue::Int32(Some(w))) => n.as_f64() == Some(f64::from(*w)),
        (Value::Number(n), ScalarValue::Int64(Some(w))) => {
            n.as_i64() == Some(*w) || (n.is_f64() && n.as_f64() == Some(*w as f64))
        }
        (Value::Number(n), ScalarValue::Float64(Some(w))) => n.as_f64() == Some(*w),
        _ => false,
    }
}

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

#[cfg(test)]
mod tests {
    use super::concat;

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
