//! Figures a plugin keeps for the server's `/metrics`: counters by name and labels, summed in the
//! plugin and read by the host through the optional entry point `eddy_udf_metrics` (a JSON list of
//! `{"name", "help", "labels": {...}, "value"}`). The host prefixes each name with `eddy_plugin_` and
//! adds the plugin's library as a label. A histogram is kept as counters of a `_bucket` name with an
//! `le` label (see [`observe`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{CString, c_char};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// A counter's identity: its name and labels.
type Key = (&'static str, Vec<(String, String)>);

/// Every counter: its help and value.
static COUNTERS: Mutex<BTreeMap<Key, (&'static str, f64)>> = Mutex::new(BTreeMap::new());

/// Adds `value` to the counter `name` with these labels (`help` describes the name).
pub fn add(name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut counters = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    counters.entry((name, labels)).or_insert((help, 0.0)).1 += value;
}

/// Counts each of `values` into the cumulative buckets of the histogram `name` (`name_bucket` with
/// an `le` label per bound, and `+Inf`), and their sum and count (`name_sum`, `name_count`).
pub fn observe(
    name: &'static str,
    help: &'static str,
    labels: &[(&str, &str)],
    bounds: &[f64],
    values: impl IntoIterator<Item = f64>,
) {
    let mut counts = vec![0u64; bounds.len() + 1];
    let (mut sum, mut n) = (0.0, 0u64);
    for v in values {
        let bucket = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        counts[bucket] += 1;
        sum += v;
        n += 1;
    }
    if n == 0 {
        return;
    }
    let bucket_name: &'static str = bucket_names(name);
    let mut cumulative = 0;
    for (i, count) in counts.iter().enumerate() {
        cumulative += count;
        let le = bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", &le));
        add(bucket_name, help, &with_le, cumulative as f64);
    }
    add(suffixed(name, "_sum"), help, labels, sum);
    add(suffixed(name, "_count"), help, labels, n as f64);
}

/// `name` with a suffix, as a name that lives as long as the plugin (one allocation per name).
fn suffixed(name: &'static str, suffix: &str) -> &'static str {
    static NAMES: Mutex<BTreeMap<String, &'static str>> = Mutex::new(BTreeMap::new());
    let full = format!("{name}{suffix}");
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names
        .entry(full.clone())
        .or_insert_with(|| Box::leak(full.into_boxed_str()))
}

fn bucket_names(name: &'static str) -> &'static str {
    suffixed(name, "_bucket")
}

/// Every counter, as the JSON the host reads.
pub fn snapshot() -> Value {
    let counters = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    Value::Array(
        counters
            .iter()
            .map(|((name, labels), (help, value))| {
                let labels: Map<String, Value> = labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                json!({"name": name, "help": help, "labels": labels, "value": value})
            })
            .collect(),
    )
}

thread_local! {
    static EXPORTED: RefCell<CString> = RefCell::new(CString::default());
}

/// `eddy_udf_metrics`: the snapshot, valid until the next call on the same thread.
pub fn exported() -> *const c_char {
    let text = CString::new(snapshot().to_string()).unwrap_or_default();
    EXPORTED.with(|e| {
        *e.borrow_mut() = text;
        e.borrow().as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_add_up() {
        add("rows_total", "Rows.", &[("model", "m")], 3.0);
        add("rows_total", "Rows.", &[("model", "m")], 2.0);
        observe(
            "score",
            "Scores.",
            &[("model", "m")],
            &[1.0, 10.0],
            [0.5, 5.0, 50.0, 7.0],
        );
        let all = snapshot();
        let value = |name: &str, le: Option<&str>| {
            all.as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name && le.is_none_or(|le| s["labels"]["le"] == le))
                .map(|s| s["value"].as_f64().unwrap())
        };
        assert_eq!(value("rows_total", None), Some(5.0));
        assert_eq!(value("score_bucket", Some("1")), Some(1.0));
        assert_eq!(value("score_bucket", Some("10")), Some(3.0));
        assert_eq!(value("score_bucket", Some("+Inf")), Some(4.0));
        assert_eq!(value("score_sum", None), Some(62.5));
        assert_eq!(value("score_count", None), Some(4.0));
    }
}
