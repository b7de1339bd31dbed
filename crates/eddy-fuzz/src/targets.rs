//! The targets, each a function of arbitrary bytes, and the seeds their runs start from.

use std::sync::OnceLock;

use eddy_common::rest::{CloseQueryArgs, KsqlRequest, QueryStreamArgs};
use eddy_kafka::origin::Origin;
use eddy_runtime::changelog::StateChange;
use eddy_runtime::format::column::ColumnBuilder;
use eddy_runtime::format::decode::PartDecoder;
use eddy_runtime::format::framing::unframe;
use eddy_runtime::format::json_fast::{KeyCache, flat_object};
use eddy_runtime::{Pipeline, Record, SinkSpec};
use eddy_sql::SqlType;
use eddy_sql::catalog::{Format, FormatKind};
use eddy_sql::statement::Statement;

use crate::sources::Sources;

/// A fuzz target: a name and what it does with an input.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Inputs a run starts from when its corpus is empty.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "sql",
        run: sql,
        seeds: sql_seeds,
    },
    Target {
        name: "json",
        run: |d| value("json", d),
        seeds: json_seeds,
    },
    Target {
        name: "json_sr",
        run: |d| value("json_sr", d),
        seeds: || encoded("JSON_SR"),
    },
    Target {
        name: "delimited",
        run: |d| value("delimited", d),
        seeds: delimited_seeds,
    },
    Target {
        name: "avro",
        run: |d| value("avro", d),
        seeds: || encoded("AVRO"),
    },
    Target {
        name: "protobuf",
        run: |d| value("protobuf", d),
        seeds: || encoded("PROTOBUF"),
    },
    Target {
        name: "protobuf_nosr",
        run: |d| value("protobuf_nosr", d),
        seeds: || encoded("PROTOBUF_NOSR"),
    },
    Target {
        name: "timestamped",
        run: |d| value("timestamped", d),
        seeds: json_seeds,
    },
    Target {
        name: "kafka",
        run: kafka,
        seeds: kafka_seeds,
    },
    Target {
        name: "windowed_key",
        run: windowed_key,
        seeds: windowed_seeds,
    },
    Target {
        name: "framing",
        run: framing,
        seeds: || encoded("AVRO"),
    },
    Target {
        name: "changelog",
        run: changelog,
        seeds: changelog_seeds,
    },
    Target {
        name: "rest",
        run: rest,
        seeds: rest_seeds,
    },
    Target {
        name: "json_fast",
        run: json_fast,
        seeds: json_fast_seeds,
    },
    Target {
        name: "envelope",
        run: envelope,
        seeds: envelope_seeds,
    },
    Target {
        name: "origin",
        run: origin,
        seeds: origin_seeds,
    },
    Target {
        name: "joined_rows",
        run: joined_rows,
        seeds: joined_rows_seeds,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn sources() -> &'static Sources {
    static SOURCES: OnceLock<Sources> = OnceLock::new();
    SOURCES.get_or_init(Sources::new)
}

/// Decodes, processes and encodes one record through a planned query.
fn through(pipeline: &Pipeline, sink: &SinkSpec, key: Option<&[u8]>, value: Option<&[u8]>) {
    let record = Record {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        timestamp: 1_700_000_000_000,
        partition: 0,
        offset: 0,
        headers: Vec::new(),
    };
    if let Ok(processed) = pipeline.process(&[record]) {
        let _ = sink.records(&processed);
    }
}

fn value(format: &str, data: &[u8]) {
    let (pipeline, sink) = &sources().queries[format];
    through(pipeline, sink, Some(b"k"), Some(data));
}

fn sql(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(statements) = eddy_sql::parse(&text) else {
        return;
    };
    for s in statements {
        if let Statement::Select(q) = &s.statement {
            let _ = sources().engine.plan_transient(q);
        }
    }
}

/// The first byte picks the KAFKA stream's type; the rest is its key and value.
fn kafka(data: &[u8]) {
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    let kafka = &sources().kafka;
    let (pipeline, sink) = &kafka[usize::from(*pick) % kafka.len()];
    let cut = rest.len() / 2;
    through(pipeline, sink, Some(&rest[..cut]), Some(&rest[cut..]));
}

fn windowed_key(data: &[u8]) {
    let (pipeline, sink) = &sources().queries["windowed"];
    through(pipeline, sink, Some(data), Some(br#"{"I": 1, "S": "x"}"#));
}

fn framing(data: &[u8]) {
    if let Ok((_, body)) = unframe(data) {
        assert!(body.len() + 5 == data.len());
    }
}

/// Changelog records: a key length byte, the key, the value (a missing value when empty).
fn changelog(data: &[u8]) {
    let Some((n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(*n).min(rest.len());
    let change = StateChange {
        key: rest[..n].to_vec(),
        value: (rest.len() > n).then(|| rest[n..].to_vec()),
    };
    if let Ok(fresh) = sources().aggregation.fresh() {
        let _ = fresh.restore(vec![change]);
    }
}

fn rest(data: &[u8]) {
    let _ = serde_json::from_slice::<KsqlRequest>(data);
    let _ = serde_json::from_slice::<QueryStreamArgs>(data);
    let _ = serde_json::from_slice::<CloseQueryArgs>(data);
}

/// The columns the JSON fast path is checked on (the last one read by no query), and a decoder of
/// them that takes the full path.
struct FastColumns {
    names: Vec<String>,
    types: Vec<SqlType>,
    unused: Vec<bool>,
    full: PartDecoder,
}

fn fast_columns() -> &'static FastColumns {
    static COLUMNS: OnceLock<FastColumns> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        let columns = vec![
            ("I".to_string(), SqlType::Int),
            ("B".to_string(), SqlType::Bigint),
            ("D".to_string(), SqlType::Double),
            ("F".to_string(), SqlType::Boolean),
            ("S".to_string(), SqlType::String),
            (
                "DEC".to_string(),
                SqlType::Decimal {
                    precision: 6,
                    scale: 2,
                },
            ),
            ("TS".to_string(), SqlType::Timestamp),
            ("UNREAD".to_string(), SqlType::String),
        ];
        let unused: Vec<bool> = (0..columns.len()).map(|i| i + 1 == columns.len()).collect();
        let mut full = PartDecoder::new(Format::new(FormatKind::Json), columns.clone());
        full.skip_unused(&unused.iter().map(|u| !u).collect::<Vec<_>>());
        let (names, types) = columns.into_iter().unzip();
        FastColumns {
            names,
            types,
            unused,
            full,
        }
    })
}

/// The columns' values as text, when every cell fits its column.
fn finished(columns: &mut [ColumnBuilder]) -> Result<Vec<String>, String> {
    columns
        .iter_mut()
        .map(|c| c.finish().map(|a| format!("{a:?}")))
        .collect()
}

/// Differential: where the JSON fast path takes a value, the full (serde) decoder takes it too and
/// fills the columns alike — also when the key spellings come from the fast path's cache.
fn json_fast(data: &[u8]) {
    let c = fast_columns();
    let builders =
        || -> Vec<ColumnBuilder> { c.types.iter().map(|t| ColumnBuilder::new(t, 1)).collect() };
    let mut cache = KeyCache::default();
    let (mut fast, mut cached) = (builders(), builders());
    if flat_object(data, &c.names, &c.unused, &mut fast, &mut cache).is_none() {
        return;
    }
    let shown = String::from_utf8_lossy(data);
    assert!(
        flat_object(data, &c.names, &c.unused, &mut cached, &mut cache).is_some(),
        "the fast path refused with its cache what it took without: {shown}"
    );
    let mut cells = Vec::new();
    let mut full = builders();
    let decoded = c.full.decode(Some(data), &mut cells).and_then(|()| {
        full.iter_mut()
            .zip(cells)
            .try_for_each(|(column, cell)| column.push(cell))
    });
    assert!(
        decoded.is_ok(),
        "the fast path took a value the full decoder refuses ({decoded:?}): {shown}"
    );
    let full = finished(&mut full);
    assert_eq!(
        finished(&mut fast),
        full,
        "fast path and full decoder differ on {shown}"
    );
    assert_eq!(
        finished(&mut cached),
        full,
        "the cached fast path differs on {shown}"
    );
}

fn json_fast_seeds() -> Vec<Vec<u8>> {
    [
        r#"{"I": 7, "B": 9000000000, "D": 2.5, "F": true, "S": "text", "DEC": 12.34, "TS": 1700000000000}"#,
        r#"{"i":-1,"d":1e300,"s":"","UNREAD":"x","other":[1]}"#,
        r#"{"D": 0.1, "B": -9223372036854775808, "DEC": "1.5", "TS": "2024-01-01T00:00:00"}"#,
        r#" { "S" : null , "F" : false } "#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// Repartition envelopes: what opens wraps again into the same bytes.
fn envelope(data: &[u8]) {
    if let Some((key, value, partition, offset)) = eddy_runtime::envelope::open(data) {
        let again = eddy_runtime::envelope::wrap(key, value, partition, offset);
        assert_eq!(
            eddy_runtime::envelope::open(&again),
            Some((key, value, partition, offset))
        );
    }
}

fn envelope_seeds() -> Vec<Vec<u8>> {
    vec![
        eddy_runtime::envelope::wrap(Some(b"k"), Some(ROW.as_bytes()), 3, 42),
        eddy_runtime::envelope::wrap(None, None, 0, 0),
    ]
}

/// The columns of the joined rows the `joined_rows` target reads: the pseudo-columns, then values
/// of assorted types (a list and a struct among them).
fn joined_columns() -> Vec<eddy_runtime::arrow::array::ArrayRef> {
    use eddy_runtime::arrow::array::{
        ArrayRef, Float64Array, Int32Array, Int64Array, ListArray, StringArray, StructArray,
    };
    use eddy_runtime::arrow::datatypes::{DataType, Field, Int32Type};
    use std::sync::Arc;
    let list =
        ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), None]), None]);
    let fields = vec![
        Field::new("A", DataType::Utf8, true),
        Field::new("B", DataType::Float64, true),
    ];
    let parts: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some("x"), None])),
        Arc::new(Float64Array::from(vec![Some(0.5), Some(-1.0)])),
    ];
    vec![
        Arc::new(Int64Array::from(vec![10, 20])),
        Arc::new(Int32Array::from(vec![0, 1])),
        Arc::new(Int64Array::from(vec![5, 6])),
        Arc::new(StringArray::from(vec![Some("car-1"), None])),
        Arc::new(list),
        Arc::new(StructArray::new(fields.into(), parts, None)),
    ]
}

fn joined_schema() -> eddy_runtime::arrow::datatypes::SchemaRef {
    use eddy_runtime::arrow::datatypes::{Field, Schema};
    let names = ["ROWTIME", "ROWPARTITION", "ROWOFFSET", "K", "L", "S"];
    let fields: Vec<Field> = joined_columns()
        .iter()
        .zip(names)
        .map(|(c, n)| Field::new(n, c.data_type().clone(), n != "ROWTIME"))
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}

/// Records of a split query's joined rows: whatever decodes encodes into rows that decode alike.
fn joined_rows(data: &[u8]) {
    use eddy_runtime::joined_rows::{JoinedRows, encode};
    let reader = JoinedRows::new(joined_schema());
    let record = Record {
        key: None,
        value: Some(data.to_vec()),
        timestamp: 0,
        partition: 3,
        offset: 9,
        headers: Vec::new(),
    };
    let decoded = reader
        .decode(std::slice::from_ref(&record))
        .expect("a batch, records skipped");
    let batch = &decoded.batch;
    if batch.num_rows() == 0 {
        return;
    }
    let rows: Vec<usize> = (0..batch.num_rows()).collect();
    let again = Record {
        value: Some(encode(batch.columns(), &rows).expect("encodes")),
        ..record
    };
    let twice = reader.decode(&[again]).expect("decodes");
    assert_eq!(&twice.batch, batch);
}

fn joined_rows_seeds() -> Vec<Vec<u8>> {
    let columns = joined_columns();
    vec![
        eddy_runtime::joined_rows::encode(&columns, &[0, 1]).expect("encodes"),
        eddy_runtime::joined_rows::encode(&columns, &[1]).expect("encodes"),
        eddy_runtime::joined_rows::encode(&columns, &[]).expect("encodes"),
    ]
}

/// Exactly-once origin headers: what decodes encodes into bytes that decode alike.
fn origin(data: &[u8]) {
    if let Ok(origin) = Origin::decode(data) {
        let again = origin.encode();
        assert_eq!(Origin::decode(&again).ok(), Some(origin));
    }
}

fn origin_seeds() -> Vec<Vec<u8>> {
    vec![
        Origin::Write {
            writer: 7,
            shard: 1,
            epoch: 3,
            occurrence: 2,
            cut: Some(vec![(0, 10), (1, 12)]),
        }
        .encode(),
        Origin::Write {
            writer: 7,
            shard: 0,
            epoch: 1,
            occurrence: 0,
            cut: None,
        }
        .encode(),
        Origin::Row {
            writer: 7,
            partition: 2,
            offset: 99,
            index: 1,
        }
        .encode(),
    ]
}

const ROW: &str = r#"{"I": 7, "B": 9000000000, "D": 2.5, "F": true, "S": "text", "DEC": 12.34,
    "BY": "AQI=", "TS": 1700000000000, "DT": 19000, "TM": 3600000, "A": [1, 2, null],
    "M": {"a": 1.5}, "ST": {"X": 3, "Y": ["p", "q"]}}"#;

fn json_seeds() -> Vec<Vec<u8>> {
    vec![
        ROW.as_bytes().to_vec(),
        b"{}".to_vec(),
        br#"{"i": "12", "ts": "x"}"#.to_vec(),
    ]
}

/// The seed row written by Eddy's own encoder of `format`.
fn encoded(format: &str) -> Vec<Vec<u8>> {
    let Some((_, pipeline, sink)) = sources().seeds.iter().find(|(f, _, _)| *f == format) else {
        return Vec::new();
    };
    let record = Record {
        key: Some(b"k".to_vec()),
        value: Some(ROW.as_bytes().to_vec()),
        timestamp: 0,
        partition: 0,
        offset: 0,
        headers: Vec::new(),
    };
    pipeline
        .process(&[record])
        .and_then(|p| sink.records(&p))
        .map(|records| records.into_iter().filter_map(|r| r.value).collect())
        .unwrap_or_default()
}

fn sql_seeds() -> Vec<Vec<u8>> {
    [
        "SELECT I + 1 AS X, UCASE(S), A[1], M['a'], ST->X FROM fuzz_json WHERE D > 1.5 AND F EMIT CHANGES;",
        "SELECT K, COUNT(*) FROM fuzz_json WINDOW TUMBLING (SIZE 30 SECONDS) GROUP BY K EMIT CHANGES;",
        "CREATE STREAM x (a STRUCT<b ARRAY<INT>>) WITH (kafka_topic='x', value_format='JSON');",
        "SELECT CAST(S AS INT), CASE WHEN I > 1 THEN 'a' ELSE 'b' END FROM fuzz_json EMIT CHANGES LIMIT 3;",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn delimited_seeds() -> Vec<Vec<u8>> {
    vec![b"7,9000000000,2.5,true,text,12.34,AQI=,1700000000000,19000,3600000".to_vec()]
}

fn kafka_seeds() -> Vec<Vec<u8>> {
    vec![
        [&[0u8][..], &7i32.to_be_bytes(), &8i32.to_be_bytes()].concat(),
        [&[1u8][..], &7i64.to_be_bytes(), &8i64.to_be_bytes()].concat(),
        [&[3u8][..], b"keyvalue"].concat(),
    ]
}

fn windowed_seeds() -> Vec<Vec<u8>> {
    vec![[&b"k"[..], &10_000i64.to_be_bytes()].concat()]
}

fn changelog_seeds() -> Vec<Vec<u8>> {
    // A checkpoint: key "C", value version 1, stream time, one position.
    let value = [
        &[1u8][..],
        &5i64.to_be_bytes(),
        &1u16.to_be_bytes(),
        &0i32.to_be_bytes(),
        &9i64.to_be_bytes(),
    ]
    .concat();
    vec![[&[1u8][..], b"C", &value].concat()]
}

fn rest_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"ksql": "SHOW STREAMS;", "streamsProperties": {"auto.offset.reset": "earliest"}}"#
            .to_vec(),
        br#"{"sql": "SELECT * FROM s EMIT CHANGES;", "properties": {}}"#.to_vec(),
        br#"{"queryId": "transient_1"}"#.to_vec(),
    ]
}
