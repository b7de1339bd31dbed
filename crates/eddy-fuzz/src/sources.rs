//! The engine the format targets decode with: a stream per format over columns of every SQL type,
//! each read by a `SELECT *` into a JSON sink, so a record goes through decoding, the pipeline and
//! encoding.

use std::collections::HashMap;
use std::sync::Arc;

use eddy_runtime::{Engine, MemoryTopics, Outcome, Pipeline, SinkSpec};

/// Columns of every SQL type, for the formats whose values are records.
const COLUMNS: &str = "K STRING KEY, I INT, B BIGINT, D DOUBLE, F BOOLEAN, S STRING, \
    DEC DECIMAL(10, 2), BY BYTES, TS TIMESTAMP, DT DATE, TM TIME, A ARRAY<INT>, \
    M MAP<STRING, DOUBLE>, ST STRUCT<X INT, Y ARRAY<STRING>>";

/// Columns of every type DELIMITED has.
const FLAT_COLUMNS: &str = "K STRING KEY, I INT, B BIGINT, D DOUBLE, F BOOLEAN, S STRING, \
    DEC DECIMAL(10, 2), BY BYTES, TS TIMESTAMP, DT DATE, TM TIME";

/// The formats the targets decode, with their stream's declaration.
const STREAMS: [(&str, &str); 8] = [
    ("json", "value_format='JSON'"),
    ("json_sr", "value_format='JSON_SR'"),
    ("delimited", "value_format='DELIMITED'"),
    ("avro", "value_format='AVRO'"),
    ("protobuf", "value_format='PROTOBUF'"),
    ("protobuf_nosr", "value_format='PROTOBUF_NOSR'"),
    ("timestamped", "value_format='JSON', timestamp='TS'"),
    (
        "windowed",
        "value_format='JSON', window_type='HOPPING', window_size='10 SECONDS'",
    ),
];

/// A planned query per format, and the schema id its value subject got.
pub struct Sources {
    pub engine: Engine,
    pub queries: HashMap<&'static str, (Arc<Pipeline>, SinkSpec)>,
    /// The stream whose single column is read in the KAFKA format, per SQL type.
    pub kafka: Vec<(Arc<Pipeline>, SinkSpec)>,
    /// A tumbling aggregation (for changelog records).
    pub aggregation: Arc<Pipeline>,
    /// Queries re-encoding the JSON stream in the binary formats, by format name.
    pub seeds: Vec<(&'static str, Arc<Pipeline>, SinkSpec)>,
}

impl Sources {
    pub fn new() -> Sources {
        // Durable state, so that the aggregation logs changes and restores changelog records.
        let mut engine = Engine::new(Arc::new(MemoryTopics::new()));
        let mut run = |sql: &str| -> Option<String> {
            let mut id = None;
            for s in eddy_sql::parse(sql).expect("the fuzz streams parse") {
                if let Outcome::QueryCreated { query_id, .. } = engine
                    .execute(&s, &Default::default())
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                {
                    id = Some(query_id);
                }
            }
            id
        };
        let mut ids = Vec::new();
        for (name, with) in STREAMS {
            let columns = match name {
                // Kafka Streams' windowed keys need a key the KAFKA format reads.
                "windowed" => "K STRING KEY, I INT, S STRING",
                // DELIMITED has no nested types.
                "delimited" => FLAT_COLUMNS,
                _ => COLUMNS,
            };
            let id = run(&format!(
                "CREATE STREAM fuzz_{name} ({columns}) WITH (kafka_topic='fuzz_{name}', partitions=1, {with}); \
                 CREATE STREAM fuzz_{name}_out WITH (value_format='JSON') AS SELECT * FROM fuzz_{name};"
            ));
            ids.push((name, id.expect("a query")));
        }
        // Valid records of the binary formats, for seeds: the JSON stream re-encoded.
        let mut seed_ids = Vec::new();
        for format in ["JSON_SR", "AVRO", "PROTOBUF", "PROTOBUF_NOSR"] {
            let id = run(&format!(
                "CREATE STREAM fuzz_seed_{format} WITH (value_format='{format}') AS \
                 SELECT * FROM fuzz_json;"
            ));
            seed_ids.push((format, id.expect("a query")));
        }
        let mut kafka_ids = Vec::new();
        for (i, t) in ["INT", "BIGINT", "DOUBLE", "STRING", "BYTES"]
            .iter()
            .enumerate()
        {
            let id = run(&format!(
                "CREATE STREAM fuzz_kafka{i} (K {t} KEY, V {t}) WITH (kafka_topic='fuzz_kafka{i}', \
                 partitions=1, key_format='KAFKA', value_format='KAFKA'); \
                 CREATE STREAM fuzz_kafka{i}_out WITH (key_format='JSON', value_format='JSON') AS \
                 SELECT * FROM fuzz_kafka{i};"
            ));
            kafka_ids.push(id.expect("a query"));
        }
        let aggregation = run(
            "CREATE STREAM fuzz_agg_in (K STRING KEY, I INT) WITH (kafka_topic='fuzz_agg_in', \
             partitions=1, value_format='JSON'); \
             CREATE TABLE fuzz_agg AS SELECT K, COUNT(*) AS C, SUM(I) AS S FROM fuzz_agg_in \
             WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY K EMIT CHANGES;",
        )
        .expect("a query");
        let planned = |engine: &Engine, id: &str| {
            let q = engine.query(id).expect("a planned query");
            (q.pipeline.clone(), q.sink_spec.clone())
        };
        let queries = ids
            .iter()
            .map(|(name, id)| (*name, planned(&engine, id)))
            .collect();
        let kafka = kafka_ids.iter().map(|id| planned(&engine, id)).collect();
        let aggregation = planned(&engine, &aggregation).0;
        let seeds = seed_ids
            .iter()
            .map(|(format, id)| {
                let (p, s) = planned(&engine, id);
                (*format, p, s)
            })
            .collect();
        Sources {
            engine,
            queries,
            kafka,
            aggregation,
            seeds,
        }
    }
}
