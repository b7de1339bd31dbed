//! ksqlDB's query-validation test (QTT) file format: loading (comments allowed), and expansion of the
//! `format` × `config` variants into test cases.

use serde::Deserialize;
use serde_json::{Map, Value};

/// One record of `inputs` or `outputs`.
#[derive(Debug, Clone, Deserialize)]
pub struct TestRecord {
    pub topic: String,
    #[serde(default)]
    pub key: Value,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub window: Option<Value>,
    #[serde(default)]
    pub headers: Option<Value>,
}

/// A pre-declared topic, with the schemas a schema registry holds for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestTopic {
    pub name: String,
    #[serde(default)]
    pub partitions: Option<i32>,
    #[serde(default)]
    pub key_format: Option<String>,
    #[serde(default)]
    pub value_format: Option<String>,
    #[serde(default)]
    pub key_schema: Option<Value>,
    #[serde(default)]
    pub value_schema: Option<Value>,
    #[serde(default)]
    pub key_schema_id: Option<u32>,
    #[serde(default)]
    pub value_schema_id: Option<u32>,
}

/// `expectedException`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExpectedException {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A test case as written in the file, before expansion.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCase {
    name: String,
    statements: Vec<String>,
    #[serde(default)]
    inputs: Vec<TestRecord>,
    #[serde(default)]
    outputs: Vec<TestRecord>,
    #[serde(default)]
    format: Vec<String>,
    #[serde(default)]
    config: Vec<String>,
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default)]
    topics: Vec<TestTopic>,
    #[serde(default)]
    expected_exception: Option<ExpectedException>,
    #[serde(default)]
    post: Option<Value>,
    #[serde(default = "enabled")]
    enabled: bool,
    #[serde(default)]
    responses: Option<Vec<Value>>,
    #[serde(default)]
    expected_error: Option<Value>,
}

fn enabled() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct RawFile {
    tests: Vec<RawCase>,
}

/// One runnable test case (a variant of a case in the file).
#[derive(Debug, Clone)]
pub struct TestCase {
    /// `<file stem> - <name>[ - <FORMAT>][ - <prop>=<config>]`, as ksqlDB names it.
    pub name: String,
    pub statements: Vec<String>,
    pub inputs: Vec<TestRecord>,
    pub outputs: Vec<TestRecord>,
    pub properties: Map<String, Value>,
    pub topics: Vec<TestTopic>,
    pub expected_exception: Option<ExpectedException>,
    pub post: Option<Value>,
    pub enabled: bool,
    /// Set for cases of the REST variant (RQTT), which run against a server.
    pub rest: Option<RestExpectations>,
}

/// What a REST case (RQTT) expects from the server.
#[derive(Debug, Clone, Default)]
pub struct RestExpectations {
    /// One per statement: `{"admin": entity}` for statements sent to `/ksql`, `{"query": [...]}` for
    /// each `SELECT` sent to `/query`; compared partially.
    pub responses: Vec<Value>,
    /// `{type, message, status}`: the request that must fail, and how.
    pub expected_error: Option<Value>,
}

/// Removes `//` line comments and `/* */` block comments outside of JSON strings.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Loads a QTT file and expands its cases.
pub fn load(stem: &str, text: &str) -> Result<Vec<TestCase>, String> {
    let file: RawFile = serde_json::from_str(&strip_comments(text))
        .map_err(|e| format!("cannot read the test file: {e}"))?;
    let mut cases = Vec::new();
    // ksqlDB tells its REST (RQTT) files from its QTT files by their directory: here, a file is a
    // REST file when any of its cases expects responses or an error of the REST API, and then all of
    // its cases run through the API (those without responses check only the topics).
    let rest_file = file
        .tests
        .iter()
        .any(|t| t.responses.is_some() || t.expected_error.is_some());
    for raw in file.tests {
        let formats: Vec<Option<String>> = if raw.format.is_empty() {
            vec![None]
        } else {
            raw.format.iter().cloned().map(Some).collect()
        };
        let configs: Vec<Option<String>> = if raw.config.is_empty() {
            vec![None]
        } else {
            raw.config.iter().cloned().map(Some).collect()
        };
        for format in &formats {
            for config in &configs {
                let mut name = format!("{stem} - {}", raw.name);
                let mut statements = raw.statements.clone();
                if let Some(f) = format {
                    name.push_str(&format!(" - {f}"));
                    statements = statements
                        .iter()
                        .map(|s| s.replace("{FORMAT}", f))
                        .collect();
                }
                let mut properties = raw.properties.clone();
                if let Some(c) = config {
                    for (k, v) in properties.iter_mut() {
                        if v.as_str() == Some("{CONFIG}") {
                            name.push_str(&format!(" - {k}={c}"));
                            *v = Value::String(c.clone());
                        }
                    }
                }
                cases.push(TestCase {
                    name,
                    statements,
                    inputs: raw.inputs.clone(),
                    outputs: raw.outputs.clone(),
                    properties,
                    topics: raw.topics.clone(),
                    expected_exception: raw.expected_exception.clone(),
                    post: raw.post.clone(),
                    enabled: raw.enabled,
                    rest: rest_file.then(|| RestExpectations {
                        responses: raw.responses.clone().unwrap_or_default(),
                        expected_error: raw.expected_error.clone(),
                    }),
                });
            }
        }
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_outside_strings_only() {
        let text = "{ // note\n \"a\": \"http://x\", /* block */ \"b\": 1 }";
        let v: Value = serde_json::from_str(&strip_comments(text)).unwrap();
        assert_eq!(v["a"], "http://x");
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn formats_expand_into_named_variants() {
        let text = r#"{"tests":[{"name":"n","format":["JSON","DELIMITED"],"statements":["CREATE STREAM X WITH (value_format='{FORMAT}');"]}]}"#;
        let cases = load("f", text).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[1].name, "f - n - DELIMITED");
        assert!(cases[1].statements[0].contains("'DELIMITED'"));
    }

    #[test]
    fn every_case_of_a_rest_file_runs_through_the_api() {
        let text = r#"{"tests":[
            {"name":"a","statements":["INSERT INTO X VALUES (1);"],"outputs":[]},
            {"name":"b","statements":["SHOW STREAMS;"],"responses":[]}]}"#;
        assert!(load("f", text).unwrap().iter().all(|c| c.rest.is_some()));
        let text =
            r#"{"tests":[{"name":"a","statements":["CREATE STREAM X AS SELECT 1 FROM Y;"]}]}"#;
        assert!(load("f", text).unwrap()[0].rest.is_none());
    }
}
