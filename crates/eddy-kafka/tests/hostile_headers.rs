//! A record whose header name is not UTF-8 — which Kafka allows and rdkafka's header accessor
//! unwraps into a panic — read by a query through a real client (librdkafka's mock cluster): the
//! query goes on, and the header is left out of the record's `HEADERS` column.

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};

use eddy_kafka::{KafkaCluster, TaskConfig};
use eddy_runtime::{Engine, Outcome};

/// Produces a JSON value `{"V":v}` to partition 0 of `topic` with a header named `name` (any bytes)
/// holding `value`, through librdkafka itself: rdkafka's headers take names as `&str`.
fn produce_with_header(producer: &BaseProducer, topic: &str, v: i64, name: &[u8], value: &[u8]) {
    let topic = std::ffi::CString::new(topic).expect("topic");
    let payload = format!(r#"{{"V":{v}}}"#);
    // SAFETY: the headers are handed to librdkafka with the message (it owns them once produced);
    // every pointer lives through the call, which copies what it keeps.
    unsafe {
        let headers = rd::rd_kafka_headers_new(1);
        let err = rd::rd_kafka_header_add(
            headers,
            name.as_ptr().cast(),
            name.len() as isize,
            value.as_ptr().cast::<c_void>(),
            value.len() as isize,
        );
        assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
        let mut fields: [rd::rd_kafka_vu_t; 5] = std::mem::zeroed();
        fields[0].vtype = rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC;
        fields[0].u.cstr = topic.as_ptr();
        fields[1].vtype = rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_PARTITION;
        fields[1].u.i32_ = 0;
        fields[2].vtype = rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE;
        fields[2].u.mem.ptr = payload.as_ptr() as *mut c_void;
        fields[2].u.mem.size = payload.len();
        fields[3].vtype = rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS;
        fields[3].u.i = rd::RD_KAFKA_MSG_F_COPY;
        fields[4].vtype = rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADERS;
        fields[4].u.headers = headers;
        let error = rd::rd_kafka_produceva(producer.client().native_ptr(), fields.as_ptr(), 5);
        assert!(error.is_null(), "produce failed");
    }
}

#[test]
fn a_header_name_that_is_not_utf8_is_left_out_and_the_query_goes_on() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("hh_in", 1, 1).expect("topic");
    mock.create_topic("HH_OUT", 1, 1).expect("topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .create()
        .expect("producer");
    produce_with_header(&producer, "hh_in", 1, b"trace", b"a");
    produce_with_header(&producer, "hh_in", 2, b"tr\xffce", b"b");
    produce_with_header(&producer, "hh_in", 3, b"trace", b"c");
    producer.flush(Duration::from_secs(10)).expect("flush");

    let cluster = Arc::new(KafkaCluster::connect(&mock.bootstrap_servers()).expect("connect"));
    cluster.wait_ready(Duration::from_secs(10)).expect("ready");
    let mut engine = Engine::new(cluster.clone());
    let mut id = String::new();
    for sql in [
        "CREATE STREAM hh_in (V INT, H ARRAY<STRUCT<KEY STRING, VALUE BYTES>> HEADERS) WITH (kafka_topic='hh_in', value_format='JSON');",
        "CREATE STREAM hh_out AS SELECT V, ARRAY_LENGTH(H) AS N FROM hh_in;",
    ] {
        for s in eddy_sql::parse(sql).expect("parse") {
            if let Outcome::QueryCreated { query_id, .. } =
                engine.execute(&s, &Default::default()).expect("execute")
            {
                id = query_id;
            }
        }
    }
    let task = eddy_kafka::start_persistent(
        cluster.clone(),
        engine.query(&id).expect("query").clone(),
        &TaskConfig::new("hh_group".to_string(), "earliest"),
    )
    .expect("start");
    let stats = task.stats.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.produced.load(Ordering::Relaxed) < 3 {
        assert!(
            Instant::now() < deadline,
            "the query wrote {} of 3 records",
            stats.produced.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    task.stop();
    let rows: Vec<(i64, i64)> = cluster
        .read_records("HH_OUT", Duration::from_secs(30))
        .expect("read")
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_slice(r.value.as_deref().expect("value")).expect("json");
            (v["V"].as_i64().expect("V"), v["N"].as_i64().expect("N"))
        })
        .collect();
    // The second record's only header is left out; the records around it keep theirs.
    assert_eq!(rows, vec![(1, 1), (2, 0), (3, 1)]);
}
