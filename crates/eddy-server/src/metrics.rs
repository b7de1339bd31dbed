//! `GET /metrics`: the server's and its queries' figures in Prometheus' text exposition format —
//! per query its records consumed, produced and skipped, expression errors, late records, whether
//! it runs, the bytes it read and its consumer group's lag per input partition; per server the push
//! queries running and started, pull queries' latency and failures, each plugin function's calls
//! (rows, time, failures: a model's inference), REST requests by status, and the process's memory,
//! CPU time and open files.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use eddy_kafka::latency::LatencySnapshot;

use crate::state::{AppState, QueryView};

/// Text in Prometheus' exposition format, a metric family at a time.
#[derive(Default)]
struct Exposition {
    text: String,
}

/// A sample's labels.
type Labels<'a> = Vec<(&'a str, String)>;

impl Exposition {
    /// One family: its `# HELP` and `# TYPE` lines and its samples.
    fn family<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(self.text, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(self.text, " {value}");
        }
    }
}

impl Exposition {
    /// A histogram family of seconds from snapshots in milliseconds, one per label set.
    fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        histograms: impl IntoIterator<Item = (Labels<'a>, &'a LatencySnapshot)>,
    ) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} histogram");
        for (labels, h) in histograms {
            let with = |extra: Option<String>| {
                let mut all: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                all.extend(extra.map(|le| format!("le=\"{le}\"")));
                format!("{{{}}}", all.join(","))
            };
            for (bound, n) in &h.cumulative {
                let le = Some((*bound as f64 / 1000.0).to_string());
                let _ = writeln!(self.text, "{name}_bucket{} {n}", with(le));
            }
            let _ = writeln!(
                self.text,
                "{name}_bucket{} {}",
                with(Some("+Inf".into())),
                h.count
            );
            let _ = writeln!(
                self.text,
                "{name}_sum{} {}",
                with(None),
                h.sum_ms as f64 / 1000.0
            );
            let _ = writeln!(self.text, "{name}_count{} {}", with(None), h.count);
        }
    }
}

/// A label value as the format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A figure of each query: name, type, help, and how to read it.
type QueryFigure = (
    &'static str,
    &'static str,
    &'static str,
    fn(&QueryView) -> u64,
);

const PER_QUERY: &[QueryFigure] = &[
    (
        "eddy_query_records_consumed_total",
        "counter",
        "Input records a query processed.",
        |v| v.consumed,
    ),
    (
        "eddy_query_bytes_consumed_total",
        "counter",
        "Bytes of the keys and values of the input records a query read.",
        |v| v.consumed_bytes,
    ),
    (
        "eddy_query_records_produced_total",
        "counter",
        "Output records a query's sink acknowledged.",
        |v| v.produced,
    ),
    (
        "eddy_query_records_skipped_total",
        "counter",
        "Input records a query skipped because they could not be processed.",
        |v| v.decode_errors,
    ),
    (
        "eddy_query_expression_errors_total",
        "counter",
        "Expression failures (the expression gave NULL).",
        |v| v.expression_errors,
    ),
    (
        "eddy_query_late_records_total",
        "counter",
        "Records dropped because their window had closed.",
        |v| v.late_records,
    ),
    (
        "eddy_query_running",
        "gauge",
        "1 while a query runs, 0 while it fails.",
        |v| u64::from(v.state == "RUNNING"),
    ),
];

/// The server's metrics now. Reads the consumer groups' committed offsets from the cluster (a
/// blocking call).
pub fn render(state: &AppState) -> String {
    let views = state.query_views();
    let mut out = Exposition::default();
    for (name, kind, help, value) in PER_QUERY {
        let samples = views
            .iter()
            .map(|v| (vec![("query", v.id.clone())], value(v) as f64));
        out.family(name, kind, help, samples);
    }
    out.histogram(
        "eddy_query_latency_seconds",
        "From an output record's timestamp (its input record's) to the sink's acknowledgement.",
        views
            .iter()
            .filter_map(|v| Some((vec![("query", v.id.clone())], v.latency.as_ref()?))),
    );
    let mut lags = Vec::new();
    for v in &views {
        match eddy_kafka::consumer_lag(&state.cluster, &v.group, &v.input_topics) {
            Ok(partitions) => lags.extend(partitions.into_iter().map(|p| {
                (
                    vec![
                        ("query", v.id.clone()),
                        ("topic", p.topic),
                        ("partition", p.partition.to_string()),
                    ],
                    p.lag as f64,
                )
            })),
            Err(e) => tracing::debug!(query = %v.id, "no lag for the metrics: {e}"),
        }
    }
    out.family(
        "eddy_query_consumer_lag",
        "gauge",
        "Records of an input partition after the offset the query's consumer group committed.",
        lags,
    );
    let push = state.push.lock().map(|p| p.len()).unwrap_or(0);
    out.family(
        "eddy_push_queries",
        "gauge",
        "Push queries (and PRINTs) running on this server.",
        [(Vec::new(), push as f64)],
    );
    out.family(
        "eddy_push_queries_max",
        "gauge",
        "Most push queries running at once (ksql.max.push.queries).",
        [(
            Vec::new(),
            state.max_push_queries.load(Ordering::Relaxed) as f64,
        )],
    );
    out.family(
        "eddy_push_readers",
        "gauge",
        "Topics read for push queries from their latest records, each by one consumer the queries share.",
        [(Vec::new(), state.push_readers.readers() as f64)],
    );
    out.family(
        "eddy_push_queries_started_total",
        "counter",
        "Push queries (and PRINTs) started on this server.",
        [(
            Vec::new(),
            state.push_started.load(Ordering::Relaxed) as f64,
        )],
    );
    out.histogram(
        "eddy_pull_query_latency_seconds",
        "Pull queries answered by this server, from the request to the rows.",
        [(Vec::new(), &state.pull_latency.snapshot())],
    );
    out.family(
        "eddy_pull_queries_failed_total",
        "counter",
        "Pull queries that failed.",
        [(Vec::new(), state.pull_failed.load(Ordering::Relaxed) as f64)],
    );
    plugin_calls(&mut out, state);
    plugin_counters(&mut out, state);
    let requests: Vec<(Labels<'static>, f64)> = state
        .requests
        .lock()
        .map(|r| {
            r.iter()
                .map(|(status, n)| (vec![("status", status.to_string())], *n as f64))
                .collect()
        })
        .unwrap_or_default();
    out.family(
        "eddy_http_requests_total",
        "counter",
        "REST requests answered, by status code.",
        requests,
    );
    process(&mut out);
    out.text
}

/// The counters each plugin keeps (a model's inferences, scores and alerts per version), as
/// `eddy_plugin_<name>` families labelled with the plugin's library.
fn plugin_counters(out: &mut Exposition, state: &AppState) {
    let mut plugins: Vec<_> = state
        .engine()
        .plugin_functions()
        .iter()
        .map(|(plugin, _)| plugin.clone())
        .collect();
    plugins.sort_by(|a, b| a.path.cmp(&b.path));
    plugins.dedup_by(|a, b| a.path == b.path);
    // (library, sample), ordered by family name so each family's samples come together.
    let mut samples: Vec<(String, eddy_runtime::functions::PluginSample)> = plugins
        .iter()
        .flat_map(|plugin| {
            let library = plugin
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            plugin
                .metrics()
                .into_iter()
                .map(move |sample| (library.clone(), sample))
        })
        .collect();
    samples.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    for family in samples.chunk_by(|a, b| a.1.name == b.1.name) {
        let first = &family[0].1;
        let labelled = family.iter().map(|(library, sample)| {
            let mut labels: Labels<'_> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            labels.push(("plugin", library.clone()));
            (labels, sample.value)
        });
        out.family(
            &format!("eddy_plugin_{}", first.name),
            "counter",
            &first.help,
            labelled,
        );
    }
}

/// A figure of each plugin function: name, help, and how to read it.
type CallFigure = (
    &'static str,
    &'static str,
    fn(&eddy_runtime::functions::CallSnapshot) -> f64,
);

/// Each plugin function's calls (a model's inference is its scoring function's calls).
fn plugin_calls(out: &mut Exposition, state: &AppState) {
    let calls: Vec<(Labels<'static>, eddy_runtime::functions::CallSnapshot)> = state
        .engine()
        .plugin_functions()
        .iter()
        .filter_map(|(plugin, function)| {
            let stats = plugin.calls(&function.name.to_lowercase())?;
            let library = plugin
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let labels = vec![
                ("function", function.name.to_uppercase()),
                ("plugin", library),
            ];
            Some((labels, stats.snapshot()))
        })
        .collect();
    let figures: [CallFigure; 4] = [
        (
            "eddy_udf_calls_total",
            "Calls into a plugin function (a batch of rows each).",
            |c| c.calls as f64,
        ),
        (
            "eddy_udf_rows_total",
            "Rows a plugin function was called on.",
            |c| c.rows as f64,
        ),
        (
            "eddy_udf_seconds_total",
            "Time spent in a plugin function's calls.",
            |c| c.nanos as f64 / 1e9,
        ),
        (
            "eddy_udf_errors_total",
            "Calls of a plugin function that failed.",
            |c| c.errors as f64,
        ),
    ];
    for (name, help, value) in figures {
        let samples = calls.iter().map(|(l, c)| (l.clone(), value(c)));
        out.family(name, "counter", help, samples);
    }
}

/// The process's own figures, from `/proc` (nothing where there is none).
fn process(out: &mut Exposition) {
    // x86-64 Linux's 4 KiB pages and 100 clock ticks a second.
    let page = 4096.0;
    let ticks = 100.0;
    if let Some(resident) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
    {
        out.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            [(Vec::new(), resident * page)],
        );
    }
    // utime and stime: the 14th and 15th fields, after the command name in parentheses.
    if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
        })
    {
        out.family(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent in seconds.",
            [(Vec::new(), cpu / ticks)],
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.family(
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            [(Vec::new(), fds.count() as f64)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_in_the_exposition_format() {
        let mut out = Exposition::default();
        out.family(
            "eddy_x_total",
            "counter",
            "An example.",
            [(vec![("query", "Q\"1\\\n".to_string())], 3.0)],
        );
        assert_eq!(
            out.text,
            "# HELP eddy_x_total An example.\n# TYPE eddy_x_total counter\neddy_x_total{query=\"Q\\\"1\\\\\\n\"} 3\n"
        );
    }
}
