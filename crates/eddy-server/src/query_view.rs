//! A persistent query as listings (`SHOW QUERIES`, `DESCRIBE`) show it.

/// A persistent query as listings show it.
#[derive(Debug, Clone)]
pub struct QueryView {
    pub id: String,
    pub statement: String,
    pub sink: String,
    pub sink_topic: String,
    pub sources: Vec<String>,
    /// The topics it reads, and its consumer group there.
    pub input_topics: Vec<String>,
    pub group: String,
    pub state: String,
    pub consumed: u64,
    pub consumed_bytes: u64,
    pub produced: u64,
    pub decode_errors: u64,
    pub expression_errors: u64,
    pub late_records: u64,
    /// From its output records' timestamps to their acknowledgement (stateless queries run here).
    pub latency: Option<eddy_kafka::latency::LatencySnapshot>,
    pub last_error: Option<String>,
    /// What it runs.
    pub pipeline: std::sync::Arc<eddy_runtime::Pipeline>,
}
