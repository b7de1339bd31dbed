//! EXTRACTJSONFIELD's JSONPath (`$.a.b[0]['c d']`) followed through the raw JSON text: the text after
//! the first value is ignored (as Jackson reads it), numbers come back as written (`1.23450`), strings
//! unquoted, objects and arrays as compact JSON; a negative index, a JSON null or a missing step is
//! NULL. The scan keeps no stack, so nesting depth costs nothing.

use serde_json::Value;

/// One step of a path.
enum Step {
    Field(String),
    Index(i64),
}

/// The value at `path` in the JSON text `json`, as EXTRACTJSONFIELD returns it.
pub fn extract(json: &str, path: &str) -> Option<String> {
    let b = json.as_bytes();
    let mut at = skip_ws(b, 0);
    for step in parse_path(path)? {
        at = child(json, at, &step)?;
    }
    let end = value_end(b, at)?;
    let text = &json[at..end];
    match b[at] {
        b'"' => serde_json::from_str::<String>(text).ok(),
        b'{' | b'[' => Some(serde_json::from_str::<Value>(text).ok()?.to_string()),
        _ => match serde_json::from_str::<Value>(text).ok()? {
            Value::Null => None,
            _ => Some(text.to_string()),
        },
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string starting at `i` (a `"`).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// The end (exclusive) of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Where the member or element `step` of the object or array at `at` starts.
fn child(json: &str, at: usize, step: &Step) -> Option<usize> {
    let b = json.as_bytes();
    let (close, wanted_index) = match (b.get(at)?, step) {
        (b'{', Step::Field(_)) => (b'}', None),
        (b'[', Step::Index(n)) => (b']', Some(usize::try_from(*n).ok()?)),
        _ => return None,
    };
    let mut i = skip_ws(b, at + 1);
    if b.get(i) == Some(&close) {
        return None;
    }
    for index in 0.. {
        if let Step::Field(name) = step {
            let key_end = string_end(b, i)?;
            let key: String = serde_json::from_str(&json[i..key_end]).ok()?;
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            if &key == name {
                return Some(i);
            }
        } else if wanted_index == Some(index) {
            return Some(i);
        }
        i = skip_ws(b, value_end(b, i)?);
        if b.get(i) != Some(&b',') {
            return None;
        }
        i = skip_ws(b, i + 1);
    }
    None
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
    fn paths_reach_fields_and_elements_in_the_raw_text() {
        let j = r#"{"a":{"b":[1, {"c":"x\"y"}]},"n":null,"@type":"t","s p":2.50}"#;
        assert_eq!(extract(j, "$.a.b[1].c").as_deref(), Some("x\"y"));
        assert_eq!(extract(j, "$.a.b[0]").as_deref(), Some("1"));
        assert_eq!(extract(j, "$.a.b[-1]"), None);
        assert_eq!(extract(j, "$.a.b[2]"), None);
        assert_eq!(
            extract(j, "$.a").as_deref(),
            Some(r#"{"b":[1,{"c":"x\"y"}]}"#)
        );
        assert_eq!(extract(j, "$['s p']").as_deref(), Some("2.50"));
        assert_eq!(extract(j, "$.@type").as_deref(), Some("t"));
        assert_eq!(extract(j, "$.n"), None);
        assert_eq!(extract(j, "$.missing"), None);
        assert_eq!(extract("not json", "$.a"), None);
        assert_eq!(
            extract(r#"{"a": 1}} trailing"#, "$.a").as_deref(),
            Some("1")
        );
        let deep = "[".repeat(100_000);
        assert_eq!(extract(&deep, "$[0][0]"), None);
    }
}
