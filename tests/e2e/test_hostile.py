"""Hostile input through the real broker: streams in JSON, DELIMITED, AVRO and PROTOBUF (schemas in the
server's own registry) each get 5,000 valid records mixed with 1,000 hostile ones, and a JSON stream with
TIMESTAMP= gets extreme timestamps under a tumbling aggregation. Every valid record comes out, every hostile
one is counted in skippedRecords and written to the processing log, every query stays RUNNING and the
server stays up.

Run by scripts/test:  python tests/e2e/test_hostile.py --server-bin target/release/eddy-server
"""

import argparse
import base64
import json
import os
import random
import struct
import sys
import tempfile
import time
import traceback

from confluent_kafka import Consumer, Producer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_e2e import Broker, Server, post, varint, avro_long as zigzag  # noqa: E402

VALID, HOSTILE = 5000, 1000
I64_MAX, I64_MIN = 2**63 - 1, -2**63


def valid_row(i):
    return {"N": i, "S": f"s{i}", "D": i * 0.5 + 0.25}


# Each format: how a valid row is written, and the hostile payloads particular to it.

def json_valid(i, _ids):
    return json.dumps(valid_row(i)).encode()


def json_hostile(rng, k, _ids):
    return [
        lambda: b"\xff" + rng.randbytes(rng.randint(0, 200)),
        lambda: b"",
        lambda: b"[" * 200_000,
        lambda: b'{"N": "' + b"x" * 900_000 + b'"}',
        lambda: b'{"N": 99999999999999999999999}',
        lambda: b'{"N": 3000000000}',
        lambda: b'{"D": 1e999}',
        lambda: json_valid(k, _ids)[: rng.randint(1, 10)],
        lambda: b'{"N": [' + b"1," * 10_000 + b'1]}',
        lambda: b'{"S": "\\ud800"}' + b"\x00",
    ]


def delimited_valid(i, _ids):
    r = valid_row(i)
    return f'{r["N"]},{r["S"]},{r["D"]}'.encode()


def delimited_hostile(rng, k, _ids):
    return [
        lambda: b"\xff\xfe" + rng.randbytes(rng.randint(0, 100)),
        lambda: b"",
        lambda: b"1,2",
        lambda: b"1,a,2,3,4",
        lambda: b"notanumber,s,1.0",
        lambda: b"99999999999,s,1.0",
        lambda: b'"unterminated,s,1.0',
        lambda: b"1," + b"x" * 900_000 + b",zz",
        lambda: b"(" * 200_000,
        lambda: b"1,s,1e99999x",
    ]


def framed(schema_id, body):
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def avro_body(i):
    r = valid_row(i)
    s = r["S"].encode()
    return zigzag(r["N"]) + zigzag(len(s)) + s + struct.pack("<d", r["D"])


def avro_valid(i, ids):
    return framed(ids["avro"], avro_body(i))


def avro_hostile(rng, k, ids):
    sid = ids["avro"]
    return [
        lambda: b"\x01" + rng.randbytes(rng.randint(4, 100)),
        lambda: b"",
        lambda: framed(999_999, avro_body(k)),
        lambda: framed(sid, zigzag(1) + zigzag(-5) + b"abc"),
        lambda: framed(sid, zigzag(1) + zigzag(2**60) + b"abc"),
        lambda: framed(sid, avro_body(k)[:-rng.randint(1, 8)]),
        lambda: framed(sid, avro_body(k) + b"\x00"),
        lambda: framed(sid, zigzag(2**40)),
        lambda: framed(sid, rng.randbytes(rng.randint(0, 3))),
        lambda: framed(sid, zigzag(1) + zigzag(3) + b"\xff\xfe\xfd" + struct.pack("<d", 1.0)),
    ]


def proto_body(i):
    r = valid_row(i)
    s = r["S"].encode()
    return b"\x08" + varint(r["N"]) + b"\x12" + varint(len(s)) + s + b"\x19" + struct.pack("<d", r["D"])


def proto_valid(i, ids):
    return framed(ids["protobuf"], b"\x00" + proto_body(i))


def proto_hostile(rng, k, ids):
    sid = ids["protobuf"]
    return [
        lambda: b"\x01" + rng.randbytes(rng.randint(4, 100)),
        lambda: b"",
        lambda: framed(sid, b"\x01"),  # a message-index count of -1
        lambda: framed(sid, zigzag(2**39) + b"\x00"),  # 2^39 message indexes
        lambda: framed(999_999, b"\x00" + proto_body(k)),
        lambda: framed(sid, b"\x00" + proto_body(k)[:-rng.randint(1, 8)]),
        lambda: framed(sid, b"\x00\x12" + varint(2**60) + b"abc"),
        lambda: framed(sid, b"\x00\x12\x03\xff\xfe\xfd"),
        lambda: framed(sid, b"\x02\x0a"),  # a path into a message that does not exist
        lambda: framed(sid, b"\x00\x0f"),  # wire type 7
    ]


FORMATS = {
    "json": ("JSON", json_valid, json_hostile),
    "delimited": ("DELIMITED", delimited_valid, delimited_hostile),
    "avro": ("AVRO", avro_valid, avro_hostile),
    "protobuf": ("PROTOBUF", proto_valid, proto_hostile),
}

AVRO_SCHEMA = {"type": "record", "name": "Rec", "fields": [
    {"name": "N", "type": "int"}, {"name": "S", "type": "string"}, {"name": "D", "type": "double"}]}
PROTO_SCHEMA = 'syntax = "proto3";\nmessage Rec {\n  int32 N = 1;\n  string S = 2;\n  double D = 3;\n}\n'


def ksql(url, sql, props=None):
    status, body = post(url + "/ksql", {"ksql": sql, "streamsProperties": props or {}})
    assert status == 200, f"{sql}: {status} {body}"
    return json.loads(body)


def query_stats(url):
    described = ksql(url, "SHOW QUERIES EXTENDED;")[0]["queryDescriptions"]
    return {d["sinks"][0]: d for d in described}


def wait_consumed(url, want, timeout=180):
    """Waits until every query named in `want` (sink -> records) has consumed that many records."""
    deadline = time.time() + timeout
    while True:
        stats = query_stats(url)
        done = all(s in stats and stats[s]["statistics"]["consumed"] >= n for s, n in want.items())
        if done:
            return stats
        if time.time() > deadline:
            raise AssertionError("queries did not consume their input: " + json.dumps(
                {s: stats.get(s, {}).get("statistics") for s in want}))
        time.sleep(0.5)


def read_topic(bootstrap, topic, at_least, timeout=120):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.message.max.bytes": 4 << 20})
    c.subscribe([topic])
    out = []
    deadline = time.time() + timeout
    idle_until = None
    while time.time() < deadline:
        msgs = c.consume(num_messages=5000, timeout=1.0)
        out.extend(m for m in msgs if not m.error())
        if len(out) >= at_least:
            # A little longer, to see records beyond what is expected (duplicates would show).
            idle_until = idle_until or time.time() + 2
            if time.time() > idle_until:
                break
    c.close()
    return [(m.key(), m.value()) for m in out]


def test_hostile_records(server, broker):
    url, rng = server.url, random.Random(14)
    status, body = post(url + "/subjects/hostile_avro-value/versions", {"schema": json.dumps(AVRO_SCHEMA)})
    assert status == 200, body
    ids = {"avro": json.loads(body)["id"]}
    status, body = post(url + "/subjects/hostile_protobuf-value/versions",
                        {"schema": PROTO_SCHEMA, "schemaType": "PROTOBUF"})
    assert status == 200, body
    ids["protobuf"] = json.loads(body)["id"]
    sinks = {}
    for name, (fmt, _, _) in FORMATS.items():
        columns = "" if fmt in ("AVRO", "PROTOBUF") else "(ID STRING KEY, N INT, S STRING, D DOUBLE) "
        if not columns:
            columns = "(ID STRING KEY) "
        ksql(url, f"CREATE STREAM hostile_{name} {columns}WITH (kafka_topic='hostile_{name}', "
                  f"value_format='{fmt}', partitions=2);"
                  f"CREATE STREAM hostile_{name}_out WITH (value_format='JSON') AS SELECT * FROM hostile_{name};",
             {"auto.offset.reset": "earliest"})
        sinks[name] = f"HOSTILE_{name.upper()}_OUT"
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "message.max.bytes": 4 << 20})
    for name, (_, valid, hostile) in FORMATS.items():
        records = [(f"v{i}".encode(), valid(i, ids)) for i in range(VALID)]
        for k in range(HOSTILE):
            makers = hostile(rng, k, ids)
            records.append((f"h{k}".encode(), makers[k % len(makers)]()))
        rng.shuffle(records)
        for i, (key, value) in enumerate(records):
            p.produce(f"hostile_{name}", value, key=key, partition=i % 2)
            if i % 1000 == 0:
                p.poll(0)
    assert p.flush(60) == 0
    stats = wait_consumed(url, {sinks[n]: VALID + HOSTILE for n in FORMATS})
    for name, sink in sinks.items():
        s = stats[sink]
        assert s["state"] == "RUNNING", s
        assert s["statistics"]["skippedRecords"] == HOSTILE, (name, s["statistics"], s["queryErrors"])
        rows = read_topic(broker.bootstrap, sink, VALID)
        got = {k.decode(): json.loads(v) for k, v in rows}
        assert len(rows) == VALID, f"{name}: {len(rows)} output records, {VALID} expected"
        assert got == {f"v{i}": valid_row(i) for i in range(VALID)}, f"{name}: outputs differ"
    return {sinks[n]: stats[sinks[n]]["id"] for n in FORMATS}


def test_hostile_timestamps(server, broker):
    url = server.url
    ksql(url, "CREATE STREAM hostile_times (ID STRING KEY, T BIGINT, N INT) WITH (kafka_topic='hostile_times', "
              "value_format='JSON', timestamp='T', partitions=2);"
              "CREATE TABLE hostile_counts AS SELECT id, COUNT(*) AS c, SUM(n) AS total FROM hostile_times "
              "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY id EMIT CHANGES;",
         {"auto.offset.reset": "earliest"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    keys = [f"k{i}" for i in range(50)]
    expected = {}
    # Records at time 0 come first in every partition: they are in window 0, not late.
    for i, k in enumerate(keys):
        p.produce("hostile_times", json.dumps({"T": 0, "N": 1}).encode(), key=k.encode(), partition=i % 2)
        expected[(k, 0)] = expected.get((k, 0), 0) + 1
    assert p.flush(30) == 0
    # Within the default grace (24 h) of time 0, so window 0 is neither late nor evicted.
    base = 3_600_000
    hostile_times = [I64_MAX, I64_MIN, I64_MAX - 1, I64_MAX - 1000, -1, -5000, "abc", "", True,
                     {"x": 1}, [1], 1e30, -1e30, "9223372036854775808"]
    hostile = 0
    for i in range(VALID):
        k = keys[i % len(keys)]
        t = base + i * 100
        p.produce("hostile_times", json.dumps({"T": t, "N": 1}).encode(), key=k.encode(),
                  partition=keys.index(k) % 2)
        start = t - t % 60_000
        expected[(k, start)] = expected.get((k, start), 0) + 1
        if i % 5 == 0:
            bad = hostile_times[hostile % len(hostile_times)]
            p.produce("hostile_times", json.dumps({"T": bad, "N": 1}).encode(), key=k.encode(),
                      partition=keys.index(k) % 2)
            hostile += 1
    assert p.flush(30) == 0
    stats = wait_consumed(url, {"HOSTILE_COUNTS": len(keys) + VALID + hostile})
    s = stats["HOSTILE_COUNTS"]
    assert s["state"] == "RUNNING", s
    assert s["statistics"]["skippedRecords"] == hostile, (s["statistics"], s["queryErrors"])
    latest = {}
    deadline = time.time() + 60
    while time.time() < deadline:
        for key, value in read_topic(broker.bootstrap, "HOSTILE_COUNTS", len(expected), timeout=10):
            inner, start = key[:-8].decode(), struct.unpack(">q", key[-8:])[0]
            latest[(inner, start)] = json.loads(value)["C"] if value else None
        if latest == expected:
            break
        time.sleep(1)
    assert latest == expected, f"{len(latest)} windows, {len(expected)} expected; " \
                               f"e.g. {[(k, latest.get(k), v) for k, v in expected.items() if latest.get(k) != v][:3]}"
    return {"HOSTILE_COUNTS": s["id"]}, hostile


def test_processing_log(broker, service_id, want):
    """Every skipped record has its entry in the processing log, under its query's logger, with the record's
    bytes (the server runs with --processing-log-rows), at most 16 KiB of them."""
    topic = f"{service_id}ksql_processing_log"
    total = sum(want.values())
    entries = [json.loads(v) for _, v in read_topic(broker.bootstrap, topic, total)]
    by_query = {}
    logged = []
    for e in entries:
        query = e["logger"].split(".")[1]
        by_query[query] = by_query.get(query, 0) + 1
        assert e["level"] == "ERROR" and e["message"]["type"] in (0, 1), e
        err = e["message"]["deserializationError"] or e["message"]["recordProcessingError"]
        assert err["errorMessage"] and len(err["errorMessage"]) <= 1100, e
        if err["recordB64"] is not None:
            logged.append(base64.b64decode(err["recordB64"]))
    assert by_query == want, f"processing log entries per query: {by_query}, expected {want}"
    assert len(logged) > total // 2, f"only {len(logged)} of {total} entries hold the record's bytes"
    assert max(map(len, logged)) == 16 << 10, "the 900 KB string's record is cut to 16 KiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    args = ap.parse_args()
    broker = Broker()
    data = tempfile.mkdtemp(prefix="eddy-hostile-")
    service_id = f"hostile{os.getpid()}_"
    server = None
    try:
        server = Server(os.path.abspath(args.server_bin), broker.bootstrap, data, service_id,
                        ["--processing-log-rows"])
        pid = server.proc.pid
        started = time.time()
        queries = test_hostile_records(server, broker)
        print(f"PASS test_hostile_records ({time.time() - started:.1f}s)")
        started = time.time()
        windowed, hostile = test_hostile_timestamps(server, broker)
        print(f"PASS test_hostile_timestamps ({time.time() - started:.1f}s)")
        want = {q: HOSTILE for q in queries.values()}
        want.update({q: hostile for q in windowed.values()})
        test_processing_log(broker, service_id, want)
        print("PASS test_processing_log")
        assert server.proc.poll() is None and server.proc.pid == pid, "the server stayed up"
    except Exception:
        traceback.print_exc()
        print(f"FAIL: server log in {data}/server.log")
        sys.exit(1)
    finally:
        if server:
            server.stop()
        broker.stop()


if __name__ == "__main__":
    main()
