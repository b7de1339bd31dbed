"""End-to-end tests of Eddy through a real Kafka-protocol broker (nisshi), the real server binary and
unmodified PyPI clients (confluent-kafka for data, ksqldb for the REST API).

Run by scripts/test:  python tests/e2e/test_e2e.py --server-bin target/release/eddy-server
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import urllib.error

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from ksqldb import KSQLdbClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N_RECORDS = 100_000
PARTITIONS = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self):
        self.port = free_port()
        out = subprocess.run([os.path.join(ROOT, "scripts/broker"), "start", "--port", str(self.port)],
                             check=True, capture_output=True, text=True)
        self.bootstrap = out.stdout.strip()

    def stop(self):
        subprocess.run([os.path.join(ROOT, "scripts/broker"), "stop", "--port", str(self.port)], check=False)


class Server:
    def __init__(self, binary, bootstrap, data_dir, service_id, extra_args=(), log_dir=None, https_ca=None):
        self.binary, self.bootstrap, self.data_dir, self.service_id = binary, bootstrap, data_dir, service_id
        self.log_dir = log_dir or data_dir
        self.extra_args = list(extra_args)
        # Variables added to the server's environment at its next start.
        self.env = {}
        self.port = free_port()
        # Served over HTTPS when a CA to check its certificate with is given.
        self.context = ssl.create_default_context(cafile=https_ca) if https_ca else None
        self.url = f"{'https' if https_ca else 'http'}://127.0.0.1:{self.port}"
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.log_dir, "server.log"), "a")
        self.proc = subprocess.Popen(
            [self.binary, "--listen", self.url, "--bootstrap-servers", self.bootstrap,
             "--data-dir", self.data_dir, "--service-id", self.service_id] + self.extra_args,
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **self.env))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/info", timeout=1, context=self.context) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and asking for credentials
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
            if self.proc.poll() is not None:
                raise RuntimeError("eddy-server exited: see " + os.path.join(self.log_dir, "server.log"))
        raise RuntimeError("eddy-server did not start")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def reading(i):
    return {"sensor_id": f"s-{i % 1000}", "ts": 1700000000000 + i, "temp": 15.0 + (i % 20),
            "rpm": 500 + (i % 9) * 250, "speed": 88.2}


def expected_output(r):
    if r["temp"] > 25.0 and r["rpm"] > 1000:
        return {"SENSOR_ID": r["sensor_id"], "TS": r["ts"], "TEMP_F": r["temp"] * 1.8 + 32, "RPM": r["rpm"]}
    return None


def produce(bootstrap, topic, start, count, extra=None):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(start, start + count):
        p.produce(topic, json.dumps(reading(i)).encode(), partition=i % PARTITIONS)
        if i % 5000 == 0:
            p.poll(0)
    for payload in extra or []:
        p.produce(topic, payload, partition=0)
    assert p.flush(60) == 0, "not every record was delivered"


def consume_all(bootstrap, topic, expected_count, timeout=120):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    out = {}
    n = 0
    # Count distinct records: after a kill -9 the topic holds duplicates, and stopping at the raw count would
    # stop before the last distinct records arrive.
    distinct = set()
    deadline = time.time() + timeout
    while len(distinct) < expected_count and time.time() < deadline:
        for m in c.consume(num_messages=10000, timeout=1.0):
            if m.error():
                continue
            out.setdefault(m.partition(), []).append(json.loads(m.value()))
            distinct.add((m.partition(), m.value()))
            n += 1
    c.close()
    return out, n


def check_outputs(by_partition, inputs_by_partition, allow_duplicates):
    """Every expected output arrived in its input's partition, in input order (duplicates allowed when asked)."""
    for p, inputs in inputs_by_partition.items():
        want = [o for o in (expected_output(r) for r in inputs) if o is not None]
        got = by_partition.get(p, [])
        if not allow_duplicates:
            assert got == want, f"partition {p}: {len(got)} records, expected {len(want)}; first difference at " \
                                f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}"
        else:
            seen = {json.dumps(g, sort_keys=True) for g in got}
            missing = [w for w in want if json.dumps(w, sort_keys=True) not in seen]
            assert not missing, f"partition {p}: {len(missing)} expected records are missing, e.g. {missing[:2]}"
            # Order: the first occurrence of each record follows input order.
            firsts, seen_order = [], set()
            for g in got:
                k = json.dumps(g, sort_keys=True)
                if k not in seen_order:
                    seen_order.add(k)
                    firsts.append(g["TS"])
            assert firsts == sorted(firsts), f"partition {p}: order not kept"


def test_pipeline(ctx):
    """CREATE STREAM over 4 partitions, a CSAS with WHERE and computed columns, 100k records, exact output."""
    client = KSQLdbClient(ctx.server.url)
    r = client.ksql("CREATE STREAM readings (sensor_id STRING, ts BIGINT, temp DOUBLE, rpm INT, speed DOUBLE) "
                    "WITH (kafka_topic='readings', value_format='JSON', partitions=4);")
    assert r[0]["commandStatus"]["status"] == "SUCCESS", r
    streams = client.ksql("SHOW STREAMS;")[0]["streams"]
    assert [s["name"] for s in streams] == ["READINGS"], streams
    r = client.ksql("CREATE STREAM hot AS SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm FROM readings "
                    "WHERE temp > 25.0 AND rpm > 1000;", stream_properties={"auto.offset.reset": "earliest"})
    assert r[0]["commandStatus"]["queryId"].startswith("CSAS_HOT"), r
    produce(ctx.broker.bootstrap, "readings", 0, N_RECORDS, extra=[b"{not json"])
    inputs = {}
    for i in range(N_RECORDS):
        inputs.setdefault(i % PARTITIONS, []).append(reading(i))
    want = sum(1 for i in range(N_RECORDS) if expected_output(reading(i)))
    started = time.time()
    got, n = consume_all(ctx.broker.bootstrap, "HOT", want)
    print(f"   {n} of {want} output records in {time.time() - started:.1f}s")
    check_outputs(got, inputs, allow_duplicates=False)
    # The malformed record was skipped and counted.
    q = client.ksql("SHOW QUERIES EXTENDED;")[0]["queryDescriptions"][0]
    assert q["statistics"]["skippedRecords"] == 1, q
    assert "readings/0@" in q["queryErrors"][0]["errorMessage"], q


def test_push_query_limit(ctx):
    """A push query with LIMIT 10 on /query-stream through the ksqldb client returns 10 rows and ends."""
    client = KSQLdbClient(ctx.server.url)

    async def run():
        rows = []
        async for x in client.query_async("SELECT * FROM hot EMIT CHANGES LIMIT 10;",
                                          stream_properties={"auto.offset.reset": "earliest"}, timeout=30):
            rows.append(x)
        return rows

    rows = asyncio.run(run())
    header, data = rows[0], rows[1:]
    assert header["columnNames"] == ["SENSOR_ID", "TS", "TEMP_F", "RPM"], header
    assert len(data) == 10 and all(len(r) == 4 for r in data), rows


def test_inserts_stream(ctx):
    """The PyPI ksqldb client's inserts_stream (HTTP/2) writes rows into a stream and gets one ack per row."""
    client = KSQLdbClient(ctx.server.url)
    client.ksql("CREATE STREAM pings (id STRING KEY, n INT) WITH (kafka_topic='pings', value_format='JSON', partitions=1);")
    acks = client.inserts_stream("pings", [{"ID": "a", "N": 1}, {"id": "b", "n": 2}, {"ID": "c", "N": "x"}])
    assert [a["status"] for a in acks] == ["ok", "ok", "error"], acks
    assert [a["seq"] for a in acks] == [0, 1, 2], acks
    status, body = post(ctx.server.url + "/query-stream", {"sql": "SELECT * FROM pings EMIT CHANGES LIMIT 2;",
                                                          "properties": {"auto.offset.reset": "earliest"}})
    assert status == 200 and body.splitlines()[1:] == ['["a",1]', '["b",2]'], body


def test_print(ctx):
    """PRINT shows raw records of a topic with format guesses, on /query-stream and /query, and stops at LIMIT."""
    status, body = post(ctx.server.url + "/query-stream", {"sql": "PRINT 'HOT' FROM BEGINNING LIMIT 3;"})
    lines = body.splitlines()
    assert status == 200, body
    assert lines[0] == "Key format: <null>", lines
    assert lines[1] == "Value format: JSON or KAFKA_STRING", lines
    assert len(lines) == 5 and all(l.startswith("rowtime: ") and ', value: {"SENSOR_ID":' in l for l in lines[2:]), lines
    status, body = post(ctx.server.url + "/query", {"ksql": "PRINT readings FROM BEGINNING INTERVAL 2 LIMIT 2;"})
    assert status == 200 and len(body.splitlines()) == 4, body
    status, body = post(ctx.server.url + "/query", {"ksql": "PRINT no_such_topic;"})
    assert status == 400 and "Could not find topic 'no_such_topic'" in body, body


def test_bad_requests(ctx):
    """Bad SQL gets ksqlDB's error shape naming the problem and its position; the server stays up."""
    status, body = post(ctx.server.url + "/ksql", {"ksql": "SELEKT * FROM hot;"})
    err = json.loads(body)
    assert status == 400 and err["@type"] == "statement_error" and err["error_code"] == 40001, body
    assert err["message"].startswith("line 1:1: Syntax Error"), err
    status, body = post(ctx.server.url + "/ksql", {"ksql": "CREATE STREAM x AS SELECT nope FROM readings;"})
    assert status == 400 and "NOPE" in json.loads(body)["message"], body
    status, body = post(ctx.server.url + "/query-stream", {"sql": "SELECT * FROM missing EMIT CHANGES;"})
    assert status == 400 and "MISSING does not exist" in body, body
    for raw in [b"not json", b"{}", b"[]", b'{"ksql": 5}']:
        req = urllib.request.Request(ctx.server.url + "/ksql", data=raw, method="POST")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError(f"{raw!r} was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400, (raw, e.code)
    status, body = post(ctx.server.url + "/close-query", {"queryId": "nope"})
    assert status == 400 and "No query with id nope" in body, body
    with urllib.request.urlopen(ctx.server.url + "/healthcheck", timeout=5) as r:
        assert json.loads(r.read())["isHealthy"] is True


def test_restart(ctx):
    """kill -9 in the middle of a 100k run; the restarted server resumes the query; nothing is lost."""
    client = KSQLdbClient(ctx.server.url)
    client.ksql("CREATE STREAM r2 (sensor_id STRING, ts BIGINT, temp DOUBLE, rpm INT, speed DOUBLE) "
                "WITH (kafka_topic='r2', value_format='JSON', partitions=4);")
    client.ksql("CREATE STREAM hot2 AS SELECT sensor_id, ts, temp*1.8+32 AS temp_f, rpm FROM r2 "
                "WHERE temp > 25.0 AND rpm > 1000;", stream_properties={"auto.offset.reset": "earliest"})
    # Produce in the background at a steady pace so the kill lands while records are flowing.
    import threading

    def paced():
        step = 5_000
        for start in range(0, N_RECORDS, step):
            produce(ctx.broker.bootstrap, "r2", start, step)
            time.sleep(0.1)

    producer = threading.Thread(target=paced)
    producer.start()
    time.sleep(1.0)
    ctx.server.kill9()
    ctx.server.start()
    producer.join()
    want = sum(1 for i in range(N_RECORDS) if expected_output(reading(i)))
    got, n = consume_all(ctx.broker.bootstrap, "HOT2", want)
    inputs = {}
    for i in range(N_RECORDS):
        inputs.setdefault(i % PARTITIONS, []).append(reading(i))
    check_outputs(got, inputs, allow_duplicates=True)
    print(f"   {n} output records for {want} expected ({n - want} duplicates after the kill)")
    streams = {s["name"] for s in client.ksql("SHOW STREAMS;")[0]["streams"]}
    assert {"READINGS", "HOT", "R2", "HOT2"} <= streams, streams


AGG_EVENTS = 600_000
AGG_KEYS = 1_000
AGG_BASE_TS = 1_700_000_000_000


def sensor_event(i):
    """Event i of the aggregation run: key, value and timestamp (1 ms apart, so 10 s windows hold 10k events)."""
    key = f"s-{i % AGG_KEYS}"
    return key, {"V": (i * 7919) % 1000, "SENSOR_ID": key}, AGG_BASE_TS + i


def expected_windows():
    """COUNT, SUM and MAX per (sensor, 10 s window), computed here from the input."""
    want = {}
    for i in range(AGG_EVENTS):
        key, value, ts = sensor_event(i)
        start = ts - ts % 10_000
        n, total, top = want.get((key, start), (0, 0, None))
        want[(key, start)] = (n + 1, total + value["V"], value["V"] if top is None else max(top, value["V"]))
    return want


def produce_sensor_events(bootstrap, start, count, topic="sensors"):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000})
    for i in range(start, start + count):
        key, value, ts = sensor_event(i)
        # Keyed records go where Kafka's partitioner puts their key, so each sensor lives in one partition.
        p.produce(topic, json.dumps(value).encode(), key=key.encode(), timestamp=ts)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0, "not every record was delivered"


def output_started(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"peek-{time.time()}", "auto.offset.reset": "earliest"})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
        return high > 0
    except Exception:
        return False
    finally:
        c.close()


def last_windowed_rows(bootstrap, topic, want, timeout):
    """The last row per (key, window start) of a windowed table's topic, read until it equals `want` or time runs out."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got, records = {}, 0
    deadline = time.time() + timeout
    while time.time() < deadline:
        batch = c.consume(num_messages=10000, timeout=1.0)
        for m in batch:
            if m.error():
                continue
            k = m.key()
            start = int.from_bytes(k[-8:], "big")
            v = json.loads(m.value())
            got[(k[:-8].decode(), start)] = (v["N"], v["TOTAL"], v["TOP"])
            records += 1
        if not batch and got == want:
            break
    c.close()
    return got, records


def create_windowed_table(ctx, stream, by_value=False):
    """A stream `stream` keyed by sensor over 4 partitions, and `<stream>_windows`: COUNT, SUM and MAX per sensor and
    10 s tumbling window, written every 500 ms. With `by_value` the sensor the table groups by is a value column, so
    the aggregation goes through a repartition topic."""
    client = KSQLdbClient(ctx.server.url)
    columns = "sensor_key STRING KEY, v INT, sensor_id STRING" if by_value else "sensor_id STRING KEY, v INT"
    client.ksql(f"CREATE STREAM {stream} ({columns}) "
                f"WITH (kafka_topic='{stream}', value_format='JSON', partitions=4);")
    client.ksql(f"CREATE TABLE {stream}_windows AS SELECT sensor_id, COUNT(*) AS n, SUM(v) AS total, MAX(v) AS top "
                f"FROM {stream} WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY sensor_id EMIT CHANGES;",
                stream_properties={"auto.offset.reset": "earliest", "ksql.streams.commit.interval.ms": "500"})


def check_pulls(ctx, table, keys, want):
    """A pull query for each key's last window returns the row computed from the input."""
    for key in keys:
        start = max(w for k, w in want if k == key)
        sql = f"SELECT * FROM {table} WHERE sensor_id = '{key}' AND WINDOWSTART = {start};"
        status, body = post(ctx.server.url + "/query-stream", {"sql": sql})
        lines = [json.loads(l) for l in body.splitlines()]
        assert status == 200 and lines[0]["columnNames"] == ["SENSOR_ID", "WINDOWSTART", "WINDOWEND", "N", "TOTAL", "TOP"], body
        assert lines[1:] == [[key, start, start + 10_000, *want[(key, start)]]], (key, lines, want[(key, start)])


def produce_with_kill(ctx, topic, output, kill):
    """Produces the aggregation run's events into `topic` at a pace, calls `kill` once `output` has rows and while input
    still arrives, then checks that the last row per (key, window) of `output` equals the aggregate computed from the
    input. Returns the expected windows and how many output records there were."""
    import threading

    def paced():
        for start in range(0, AGG_EVENTS, 50_000):
            produce_sensor_events(ctx.broker.bootstrap, start, 50_000, topic=topic)
            time.sleep(0.2)

    producer = threading.Thread(target=paced)
    producer.start()
    want = expected_windows()
    # Kill once the query has written output and while input is still arriving, so that state was restored.
    deadline = time.time() + 60
    while not output_started(ctx.broker.bootstrap, output) and time.time() < deadline:
        time.sleep(0.5)
    assert producer.is_alive(), "the input was complete before the kill; make the run longer"
    kill()
    producer.join()
    got, records = last_windowed_rows(ctx.broker.bootstrap, output, want, timeout=300)
    wrong = [(k, got.get(k), v) for k, v in want.items() if got.get(k) != v]
    extra = [k for k in got if k not in want]
    assert not wrong and not extra, f"{len(wrong)} windows differ (key, got, want), e.g. {wrong[:3]}; {len(extra)} extra"
    return want, records


def test_windowed_aggregation_restart(ctx):
    """CTAS with a 10 s tumbling window (COUNT, SUM, MAX per key) over 1 M events and 1,000 keys, with a kill -9 in the
    middle: after the restart the last row per (key, window) equals the aggregate computed from the input — nothing
    lost, nothing counted twice."""
    create_windowed_table(ctx, "sensors")
    want, records = produce_with_kill(ctx, "sensors", "SENSORS_WINDOWS", lambda: (ctx.server.kill9(), ctx.server.start()))
    # A pull query for a key and window returns the same row.
    check_pulls(ctx, "sensors_windows", ["s-7", "s-999"], want)
    # The state's changelog is compacted: it keeps the latest record of each group.
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": ctx.broker.bootstrap})
    changelog = [t for t in admin.list_topics(timeout=10).topics
                 if "query_CTAS_SENSORS_WINDOWS_" in t and t.endswith("-Materialize-changelog")]
    assert len(changelog) == 1, changelog
    config = list(admin.describe_configs([ConfigResource("topic", changelog[0])]).values())[0].result()
    assert config["cleanup.policy"].value == "compact", config["cleanup.policy"]
    print(f"   {len(want)} windows exact after kill -9; {records} output records; pull queries agree")


def test_repartitioned_aggregation_restart(ctx):
    """The windowed aggregation grouped by a value column: records go through the query's repartition topic (named as
    ksqlDB names it), whose partitions the state follows; after a kill -9 the repartition stage writes some records
    again, and the aggregation leaves those out — every window exact."""
    create_windowed_table(ctx, "relay", by_value=True)
    want, records = produce_with_kill(ctx, "relay", "RELAY_WINDOWS", lambda: (ctx.server.kill9(), ctx.server.start()))
    check_pulls(ctx, "relay_windows", ["s-7", "s-999"], want)
    from confluent_kafka.admin import AdminClient
    topics = AdminClient({"bootstrap.servers": ctx.broker.bootstrap}).list_topics(timeout=10).topics
    suffix = "-Aggregate-GroupBy-repartition"
    repartition = [t for t in topics if "query_CTAS_RELAY_WINDOWS_" in t and t.endswith(suffix)]
    assert len(repartition) == 1 and len(topics[repartition[0]].partitions) == 4, sorted(topics)
    def repartitioned():
        c = Consumer({"bootstrap.servers": ctx.broker.bootstrap, "group.id": f"count-{time.time()}"})
        n = sum(c.get_watermark_offsets(TopicPartition(repartition[0], p), timeout=10)[1] for p in range(4))
        c.close()
        return n

    written = repartitioned()
    assert written >= AGG_EVENTS, f"{written} repartitioned records for {AGG_EVENTS} inputs"
    # Make the repartition stage write the whole input again: stop the server, rewind its consumer group, restart.
    ctx.server.stop()
    group = repartition[0][: -len(suffix)] + "-GroupBy"
    rewind = Consumer({"bootstrap.servers": ctx.broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    deadline = time.time() + 30
    while True:
        try:
            # Accepted once the stopped server's member has left the group.
            rewind.commit(offsets=[TopicPartition("relay", p, 0) for p in range(4)], asynchronous=False)
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(1)
    rewind.close()
    ctx.server.start()
    deadline = time.time() + 120
    while repartitioned() < written + AGG_EVENTS and time.time() < deadline:
        time.sleep(0.5)
    assert repartitioned() >= written + AGG_EVENTS, "the repartition stage did not write the input again"
    time.sleep(3)
    again, after = last_windowed_rows(ctx.broker.bootstrap, "RELAY_WINDOWS", want, timeout=60)
    assert again == want and after == records, f"replayed input changed the table: {after} output records, was {records}"
    print(f"   {len(want)} windows exact through {repartition[0]} after kill -9 ({written - AGG_EVENTS} records "
          f"repartitioned twice); the whole input repartitioned again changed nothing; {records} output records")


def assigned_partitions(log_path, query):
    """The partitions a server's log says the query was last assigned."""
    import re
    last = None
    with open(log_path, errors="replace") as f:
        for line in f:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if "partitions assigned" in line and query in line:
                last = line.rsplit("partitions=", 1)[1].strip()
    return json.loads(last) if last else None


def test_scale_out_moves_state(ctx):
    """Two servers with one service id share an aggregation grouped by its key: the consumer group splits the input's
    partitions between them, each keeping its partitions' state; a kill -9 of one moves its partitions to the other,
    which restores their state from the changelog and finishes exactly."""
    create_windowed_table(ctx, "fleet")
    data = tempfile.mkdtemp(prefix="eddy-e2e-second-")
    second = Server(ctx.server.binary, ctx.broker.bootstrap, data, ctx.server.service_id)
    first_log = os.path.join(ctx.server.data_dir, "server.log")
    second_log = os.path.join(data, "server.log")
    query = "CTAS_FLEET_WINDOWS_"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            a, b = assigned_partitions(first_log, query), assigned_partitions(second_log, query)
            if a and b and sorted(a + b) == [0, 1, 2, 3]:
                break
            time.sleep(0.5)
        assert a and b and sorted(a + b) == [0, 1, 2, 3], f"partitions not split: first {a}, second {b}"
        want, records = produce_with_kill(ctx, "fleet", "FLEET_WINDOWS", second.kill9)
        assert sorted(assigned_partitions(first_log, query)) == [0, 1, 2, 3], "the survivor took every partition"
        # The survivor answers pull queries for keys whose state it took over.
        check_pulls(ctx, "fleet_windows", ["s-0", "s-1", "s-2", "s-3", "s-998", "s-999"], want)
        print(f"   split {a} / {b}; {len(want)} windows exact after the second server's kill -9; {records} output records")
    finally:
        second.stop()


def test_servers_follow_each_other(ctx):
    """Two servers with one service id, started before any statement: what one is asked to run, the other runs
    too within seconds — a new stream is in its catalog, a new query runs on it (with the first stopped, the
    second alone turns the input into the output), /status on either shows what the commands did,
    /clusterStatus lists both servers alive, a TERMINATE on the other stops it on both, RELOAD FUNCTIONS on one loads the plugins
    copied into the other's plugin directory."""
    import shutil
    plugins = [tempfile.mkdtemp(prefix="eddy-follow-plugins-") for _ in range(2)]
    service = f"follow{os.getpid()}"
    servers = [Server(ctx.server.binary, ctx.broker.bootstrap, tempfile.mkdtemp(prefix="eddy-e2e-follow-"), service,
                      ["--plugin-dir", plugins[i]]) for i in range(2)]

    def ksql(server, sql):
        status, body = post(server.url + "/ksql", {"ksql": sql, "streamsProperties": {"auto.offset.reset": "earliest"}})
        assert status == 200, f"{sql}: {status} {body}"
        return json.loads(body)

    def eventually(what, check):
        deadline = time.time() + 20
        while time.time() < deadline:
            if check():
                return
            time.sleep(0.3)
        raise AssertionError(f"not within 20 s: {what}")

    def queries(server):
        return [q["id"] for q in ksql(server, "SHOW QUERIES;")[0]["queries"]]

    try:
        ksql(servers[0], "CREATE STREAM follow_in (id INT KEY, v INT) WITH (kafka_topic='follow_in', "
                         "value_format='JSON', partitions=4);")
        eventually("the stream in the second server's catalog", lambda: "FOLLOW_IN" in
                   [s["name"] for s in ksql(servers[1], "SHOW STREAMS;")[0]["streams"]])
        ksql(servers[0], "CREATE STREAM follow_out AS SELECT id, v * 2 AS v2 FROM follow_in;")
        eventually("the query running on the second server", lambda: any(
            q.startswith("CSAS_FOLLOW_OUT") for q in queries(servers[1])))

        def get(server, path):
            with urllib.request.urlopen(server.url + path) as r:
                return json.load(r)
        # ksqlDB's operational endpoints: what each command did, on the server that followed it too;
        # the servers of the service id, each alive.
        assert get(servers[1], "/status")["commandStatuses"]["stream/`FOLLOW_OUT`/create"] == "SUCCESS"
        assert get(servers[1], "/status/stream/FOLLOW_IN/create")["status"] == "SUCCESS"
        eventually("both servers alive in /clusterStatus", lambda: all(
            get(servers[0], "/clusterStatus")["clusterStatus"].get(f"127.0.0.1:{s.port}", {}).get("hostAlive")
            for s in servers))
        # The second server runs the query: with the first stopped, the input still comes out doubled.
        servers[0].stop()
        p = Producer({"bootstrap.servers": ctx.broker.bootstrap})
        for i in range(200):
            p.produce("follow_in", json.dumps({"V": i}).encode(), key=i.to_bytes(4, "big"))
        assert p.flush(30) == 0
        out, _ = consume_all(ctx.broker.bootstrap, "FOLLOW_OUT", 200, timeout=60)
        doubled = {r["V2"] for rows in out.values() for r in rows}
        assert doubled == {2 * i for i in range(200)}, f"{len(doubled)} of 200 rows from the second server"
        servers[0].start()
        query = next(q for q in queries(servers[1]) if q.startswith("CSAS_FOLLOW_OUT"))
        ksql(servers[1], f"TERMINATE {query};")
        eventually("the query gone from the first server", lambda: query not in queries(servers[0]))
        for folder in plugins:
            shutil.copy(os.path.join(ROOT, "target/plugins/dir/libeddy_udf_geo.so"), folder)
        ksql(servers[0], "RELOAD FUNCTIONS;")
        eventually("the plugin's function on the second server", lambda: "HAVERSINE_KM" in
                   [f["name"] for f in ksql(servers[1], "SHOW FUNCTIONS;")[0]["functions"]])
    finally:
        for server in servers:
            server.stop()


def test_metrics(ctx):
    """/metrics parses with Prometheus' own parser; during a CSAS its consumed and produced counters (records, and
    bytes read) match what went in and came out of the topics, its latency histogram has an observation per output
    record, and once the input stops the consumer lag of every input partition falls to 0; pull and push queries
    are counted."""
    from prometheus_client.parser import text_string_to_metric_families
    url = ctx.server.url
    status, body = post(url + "/ksql", {"ksql": "CREATE STREAM metered (id INT KEY, v INT) WITH (kafka_topic='metered', "
                                        "value_format='JSON', partitions=2); CREATE STREAM metered_big AS SELECT id, v "
                                        "FROM metered WHERE v >= 250;",
                                        "streamsProperties": {"auto.offset.reset": "earliest"}})
    assert status == 200, body
    p = Producer({"bootstrap.servers": ctx.broker.bootstrap})
    for i in range(1000):
        p.produce("metered", json.dumps({"V": i}).encode(), key=i.to_bytes(4, "big"), partition=i % 2)
    assert p.flush(30) == 0
    out, _ = consume_all(ctx.broker.bootstrap, "METERED_BIG", 750, timeout=60)
    assert sum(len(rows) for rows in out.values()) >= 750
    # A pull query and a push query, counted by the server.
    status, body = post(url + "/query-stream", {"sql": "SELECT * FROM metered WHERE v = 7;"})
    assert status == 200, body
    status, body = post(url + "/query-stream", {"sql": "SELECT * FROM metered EMIT CHANGES LIMIT 1;",
                                                "properties": {"auto.offset.reset": "earliest"}})
    assert status == 200, body

    def scrape():
        with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
            assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
            text = r.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
        return samples

    query = None
    deadline = time.time() + 30
    while time.time() < deadline:
        samples = scrape()
        consumed = {l["query"]: v for l, v in samples.get("eddy_query_records_consumed_total", [])}
        query = next((q for q in consumed if q.startswith("CSAS_METERED_BIG")), None)
        lags = [v for l, v in samples.get("eddy_query_consumer_lag", []) if l["query"] == query]
        if query and consumed[query] == 1000 and len(lags) == 2 and all(v == 0 for v in lags):
            break
        time.sleep(0.5)
    produced = {l["query"]: v for l, v in samples["eddy_query_records_produced_total"]}
    assert query and consumed[query] == 1000, consumed
    assert produced[query] == 750, produced
    assert len(lags) == 2 and all(v == 0 for v in lags), samples.get("eddy_query_consumer_lag")
    latency = {l["query"]: v for l, v in samples["eddy_query_latency_seconds_count"]}
    assert latency[query] == 750, latency
    buckets = [(l["le"], v) for l, v in samples["eddy_query_latency_seconds_bucket"] if l["query"] == query]
    assert buckets[-1] == ("+Inf", 750), buckets
    read_bytes = {l["query"]: v for l, v in samples["eddy_query_bytes_consumed_total"]}
    assert read_bytes[query] == sum(4 + len(json.dumps({"V": i})) for i in range(1000)), read_bytes
    assert samples["eddy_pull_query_latency_seconds_count"][0][1] >= 1, samples["eddy_pull_query_latency_seconds_count"]
    assert samples["eddy_push_queries_started_total"][0][1] >= 1
    statuses = {l["status"]: v for l, v in samples["eddy_http_requests_total"]}
    assert statuses.get("200", 0) >= 1, statuses
    assert samples["process_resident_memory_bytes"][0][1] > 0
    print(f"   {query}: consumed {consumed[query]:.0f}, produced {produced[query]:.0f}, lag 0 on 2 partitions")


def lease_holders(logs, query):
    """Which of the server logs says it holds the query's lease now (took it last, not lost since)."""
    import re
    holders = []
    for log in logs:
        held = False
        with open(log, errors="replace") as f:
            for line in f:
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)
                if query in line and "took the query's lease" in line:
                    held = True
                elif query in line and "lost the query's lease" in line:
                    held = False
        holders.append(held)
    return holders


def last_counts(bootstrap, topic, want, timeout):
    """The last value of N per key of a table's topic, read until it equals `want` or time runs out."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = {}
    deadline = time.time() + timeout
    while time.time() < deadline:
        batch = c.consume(num_messages=10000, timeout=1.0)
        for m in batch:
            if not m.error():
                got[m.key().decode()] = json.loads(m.value())["N"] if m.value() else None
        if not batch and got == want:
            break
    c.close()
    return got


def test_table_aggregation_fails_over(ctx):
    """A table aggregated by a value column keeps one shard: of two servers with one service id only the lease holder
    runs it; a kill -9 of the holder passes the lease, and the state, to the other, and the counts stay exact through
    updates and deletes."""
    client = KSQLdbClient(ctx.server.url)
    client.ksql("CREATE TABLE users (id STRING PRIMARY KEY, region STRING) "
                "WITH (kafka_topic='users', value_format='JSON', partitions=4);")
    client.ksql("CREATE TABLE per_region AS SELECT region, COUNT(*) AS n FROM users GROUP BY region EMIT CHANGES;",
                stream_properties={"auto.offset.reset": "earliest", "ksql.streams.commit.interval.ms": "500"})
    data = tempfile.mkdtemp(prefix="eddy-e2e-second-")
    second = Server(ctx.server.binary, ctx.broker.bootstrap, data, ctx.server.service_id)
    servers = [ctx.server, second]
    logs = [os.path.join(s.data_dir, "server.log") for s in servers]
    query = "CTAS_PER_REGION_"
    users = {}

    def produce(changes):
        p = Producer({"bootstrap.servers": ctx.broker.bootstrap, "linger.ms": 20})
        for user, region in changes:
            value = None if region is None else json.dumps({"REGION": region}).encode()
            p.produce("users", value, key=user.encode())
            if region is None:
                users.pop(user, None)
            else:
                users[user] = region
        assert p.flush(60) == 0

    def expected():
        want = {}
        for region in users.values():
            want[region] = want.get(region, 0) + 1
        return want

    try:
        deadline = time.time() + 60
        while sum(lease_holders(logs, query)) != 1 and time.time() < deadline:
            time.sleep(0.5)
        holders = lease_holders(logs, query)
        assert sum(holders) == 1, f"lease holders: {holders}"
        produce([(f"u-{i}", f"r-{i % 7}") for i in range(20_000)])
        assert last_counts(ctx.broker.bootstrap, "PER_REGION", expected(), 120) == expected()
        # Either server answers pull queries: the one without the state asks the lease holder for it. A
        # server joining the lease group moves the lease for a moment (eager rebalancing): the answer
        # then asks to retry, and a client does.
        def pull(server, sql):
            deadline = time.time() + 15
            while True:
                status, body = post(server.url + "/query-stream", {"sql": sql})
                if status == 200 or "Retry in a few seconds" not in body or time.time() > deadline:
                    return status, body
                time.sleep(0.5)

        for server in servers:
            status, body = pull(server, "SELECT * FROM per_region WHERE region = 'r-1';")
            lines = [json.loads(l) for l in body.splitlines()]
            assert status == 200 and lines[1:] == [["r-1", expected()["r-1"]]], (server.url, body)
            status, body = pull(server, "SELECT * FROM per_region;")
            rows = {r[0]: r[1] for r in (json.loads(l) for l in body.splitlines()[1:])}
            assert status == 200 and rows == expected(), (server.url, body)
        holder = servers[holders.index(True)]
        holder.kill9()
        produce([(f"u-{i}", f"r-{(i + 3) % 7}") for i in range(0, 20_000, 4)] + [(f"u-{i}", None) for i in range(1, 20_000, 9)])
        got = last_counts(ctx.broker.bootstrap, "PER_REGION", expected(), 180)
        assert got == expected(), f"counts after the failover {got}, want {expected()}"
        survivor = 1 - holders.index(True)
        assert lease_holders(logs, query)[survivor], "the survivor took the lease"
        print(f"   the lease moved from server {holders.index(True)} to {survivor}; counts exact: {expected()}")
    finally:
        second.stop()
        if ctx.server.proc.poll() is not None:
            ctx.server.start()


def haversine_km(lat1, lon1, lat2, lon2):
    import math
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def test_udf_plugins(ctx):
    """A server started with an empty plugin directory: plugins copied in are usable after RELOAD FUNCTIONS
    (no restart); a CSAS calling a plugin UDF, a CTAS calling a plugin UDAF and a CSAS whose UDF panics on
    some records all run over 20,000 events; the panics are counted in the query's status while the server
    and the other queries go on."""
    import hashlib
    import shutil
    plugins = os.path.join(tempfile.mkdtemp(prefix="eddy-plugins-"))
    data = tempfile.mkdtemp(prefix="eddy-e2e-plugins-")
    server = Server(ctx.server.binary, ctx.broker.bootstrap, data, f"plugins{os.getpid()}",
                    ["--plugin-dir", plugins])
    try:
        client = KSQLdbClient(server.url)
        client.ksql("CREATE STREAM trips (car STRING KEY, seq BIGINT, lat1 DOUBLE, lon1 DOUBLE, lat2 DOUBLE, "
                    "lon2 DOUBLE, speed DOUBLE, n BIGINT) WITH (kafka_topic='trips', value_format='JSON', partitions=4);")
        status, body = post(server.url + "/ksql", {"ksql": "CREATE STREAM d AS SELECT HAVERSINE_KM(1.0, 2.0, 3.0, 4.0) FROM trips;"})
        assert status == 400 and "HAVERSINE_KM" in body.upper(), body
        built = os.path.join(ROOT, "target/plugins/dir")
        # The template (a 12-line crate against eddy-udf alone) among them.
        for lib in ["libeddy_udf_geo.so", "libeddy_udf_stats.so", "libeddy_udf_testing.so",
                    "libeddy_udf_template.so"]:
            shutil.copy(os.path.join(built, lib), plugins)
        r = client.ksql("RELOAD FUNCTIONS;")
        message = r[0]["commandStatus"]["message"]
        assert "eddy-udf-geo" in message and "HAVERSINE_KM" in message and "Not loaded" not in message, message
        names = {f["name"]: f for f in client.ksql("SHOW FUNCTIONS;")[0]["functions"]}
        assert names["HAVERSINE_KM"]["type"] == "SCALAR" and names["STREAM_MEAN"]["type"] == "AGGREGATE", names
        d = client.ksql("DESCRIBE FUNCTION HAVERSINE_KM;")[0]
        lib = os.path.join(plugins, "libeddy_udf_geo.so")
        assert d["sha256"] == hashlib.sha256(open(lib, "rb").read()).hexdigest(), d
        assert d["functions"][0]["argumentTypes"] == ["DOUBLE"] * 4, d
        earliest = {"auto.offset.reset": "earliest"}
        client.ksql("CREATE STREAM dist AS SELECT car, seq, HAVERSINE_KM(lat1, lon1, lat2, lon2) AS km FROM trips;",
                    stream_properties=earliest)
        client.ksql("CREATE TABLE mean_speed AS SELECT car, STREAM_MEAN(speed) AS mean, COUNT(*) AS n FROM trips "
                    "GROUP BY car;", stream_properties=earliest)
        client.ksql("CREATE STREAM frag AS SELECT car, seq, n, FRAGILE(n) AS f FROM trips;",
                    stream_properties=earliest)
        total = 20_000
        events = []
        p = Producer({"bootstrap.servers": ctx.broker.bootstrap, "linger.ms": 20})
        for i in range(total):
            e = {"seq": i, "lat1": -60 + (i % 120), "lon1": (i * 7) % 360 - 180, "lat2": 45.5, "lon2": -73.5 + i % 10,
                 "speed": float(i % 130), "n": i % 50}
            car = f"c-{i % 100}"
            events.append((car, e))
            p.produce("trips", json.dumps(e).encode(), key=car.encode())
            if i % 5000 == 0:
                p.poll(0)
        assert p.flush(60) == 0
        got, _ = consume_all(ctx.broker.bootstrap, "DIST", total)
        kms = {r["SEQ"]: r["KM"] for rows in got.values() for r in rows}
        assert len(kms) == total, len(kms)
        for i, (_, e) in enumerate(events):
            want = haversine_km(e["lat1"], e["lon1"], e["lat2"], e["lon2"])
            assert abs(kms[i] - want) <= 1e-9 * max(1.0, want), (i, kms[i], want)
        got, _ = consume_all(ctx.broker.bootstrap, "FRAG", total)
        frag = [r for rows in got.values() for r in rows]
        assert len(frag) == total, len(frag)
        assert all((r["F"] is None) == (r["N"] == 13) and (r["F"] in (None, r["N"])) for r in frag), \
            [r for r in frag if (r["F"] is None) != (r["N"] == 13)][:3]
        speeds = {}
        for car, e in events:
            speeds.setdefault(car, []).append(e["speed"])
        counts = {car: len(v) for car, v in speeds.items()}
        c = Consumer({"bootstrap.servers": ctx.broker.bootstrap, "group.id": f"means-{time.time()}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["MEAN_SPEED"])
        means = {}
        deadline = time.time() + 60
        while time.time() < deadline and {k: v["N"] for k, v in means.items()} != counts:
            for m in c.consume(num_messages=10000, timeout=1.0):
                if not m.error() and m.value():
                    means[m.key().decode()] = json.loads(m.value())
        c.close()
        assert {k: v["N"] for k, v in means.items()} == counts, "the counts did not reach the input's"
        for car, v in speeds.items():
            assert abs(means[car]["MEAN"] - sum(v) / len(v)) < 1e-9, (car, means[car])
        status, body = post(server.url + "/query-stream",
                            {"sql": "SELECT car, REPEAT_TEXT(car, 2) AS twice FROM trips WHERE seq = 7;"})
        lines = [json.loads(line) for line in body.splitlines()]
        assert status == 200 and lines[1:] == [["c-7", "c-7c-7"]], body
        queries = {q["sinks"][0]: q for q in client.ksql("SHOW QUERIES EXTENDED;")[0]["queryDescriptions"]}
        f = queries["FRAG"]
        assert f["state"] == "RUNNING", f
        assert f["statistics"]["expressionErrors"] == total // 50, f["statistics"]
        assert "unlucky thirteen" in f["queryErrors"][0]["errorMessage"], f["queryErrors"]
        assert queries["DIST"]["statistics"]["expressionErrors"] == 0, queries["DIST"]
        assert queries["MEAN_SPEED"]["state"] == "RUNNING", queries["MEAN_SPEED"]
        # Each plugin function's calls in /metrics: every row, the time spent, the failing calls.
        from prometheus_client.parser import text_string_to_metric_families
        with urllib.request.urlopen(server.url + "/metrics", timeout=30) as r:
            calls = {(s.name, s.labels["function"]): s.value
                     for family in text_string_to_metric_families(r.read().decode())
                     for s in family.samples if s.name.startswith("eddy_udf_")}
        assert calls[("eddy_udf_rows_total", "HAVERSINE_KM")] >= total, calls
        assert calls[("eddy_udf_seconds_total", "HAVERSINE_KM")] > 0, calls
        assert calls[("eddy_udf_rows_total", "STREAM_MEAN")] >= total, calls
        assert calls[("eddy_udf_errors_total", "FRAGILE")] >= 1, calls
        assert calls[("eddy_udf_errors_total", "HAVERSINE_KM")] == 0, calls
    finally:
        server.stop()


def topic_records(bootstrap, topic, at_least):
    """(key, value) of every record of `topic`: reads until at least `at_least` arrived and ten seconds
    pass without more (at most five minutes)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    rows, idle, deadline = [], 0, time.time() + 300
    while time.time() < deadline and idle < 10:
        fresh = [m for m in c.consume(num_messages=10000, timeout=1.0) if not m.error()]
        idle = 0 if fresh or len(rows) < at_least else idle + 1
        rows += [(m.key(), json.loads(m.value())) for m in fresh]
    c.close()
    return rows


def same_alerts(online, offline, score, threshold):
    """Online and offline alerts agree except within a hair of the threshold, where two inference
    engines may fall either way."""
    near = np.abs(score - threshold) <= 1e-4 * abs(threshold)
    differ = online != offline
    assert not (differ & ~near).any(), \
        f"{int((differ & ~near & online).sum())} alerts only online, {int((differ & ~near & offline).sum())} only offline"


def test_anomaly_detection(ctx):
    """500,400 generated car events (139 cars x 1 h, labelled faults) through the two pipelines of
    docs/anomaly-detection.md: a CSAS that keeps the events IS_ANOMALY flags (the per-event autoencoder),
    and udfs/anomaly/sql/car-alerts.sql (20-second windows every 5 seconds per car, a CTAS with AVG and
    STDDEV_POP, EMIT FINAL, scored by a CSAS through gaussian_20s@production, at version 2). Both alert
    topics hold the same alerts as the models scored offline by onnxruntime (on features computed by
    numpy), so precision and recall from the topics equal the offline figures."""
    sys.path.insert(0, os.path.join(ROOT, "udfs/anomaly/train"))
    import telemetry
    from metrics import alarms
    from onnx_session import session
    models = os.path.join(ROOT, "udfs/anomaly/models")
    os.environ["EDDY_MODEL_DIR"] = models
    data = tempfile.mkdtemp(prefix="eddy-e2e-anomaly-")
    server = Server(ctx.server.binary, ctx.broker.bootstrap, data, f"anomaly{os.getpid()}",
                    ["--plugin-dir", os.path.join(ROOT, "target/plugins/dir")])
    cars, hours, seed = 139, 1, 5
    car_hours = cars * hours
    earliest = {"auto.offset.reset": "earliest"}
    try:
        client = KSQLdbClient(server.url)
        client.ksql("ALTER MODEL gaussian_20s SET ALIAS production = 2;")
        # The windowed pipeline exactly as scripts/demo runs it.
        script = open(os.path.join(ROOT, "udfs/anomaly/sql/car-alerts.sql")).read()
        script = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
        for statement in filter(str.strip, script.split(";")):
            if not statement.strip().upper().startswith("SET "):
                client.ksql(statement + ";", stream_properties=earliest)
        features = ", ".join(telemetry.FEATURES)
        client.ksql(f"CREATE STREAM alerts AS SELECT car_id, ts, label, fault, ANOMALY_CAUSE('autoencoder@1', "
                    f"{features}) AS cause FROM telemetry WHERE IS_ANOMALY('autoencoder@1', {features});",
                    stream_properties=earliest)
        started = time.time()
        sent = telemetry.produce(ctx.broker.bootstrap, "telemetry", cars, hours, seed, 3.0, rate=1e9)
        assert sent == cars * hours * 3600, sent
        print(f"   produced {sent} events in {time.time() - started:.1f}s")

        # Per event: the autoencoder.
        x, label, kind, car = telemetry.arrays(cars, hours, seed, 3.0, decimals=telemetry.DECIMALS)
        card = json.load(open(os.path.join(models, "autoencoder/1/card.json")))
        score = session(os.path.join(models, "autoencoder/1/model.onnx")).run(["score"], {"X": x})[0]
        offline = score >= card["threshold"]
        online = np.zeros(len(x), dtype=bool)
        for key, v in topic_records(ctx.broker.bootstrap, "ALERTS", offline.sum() * 0.99):
            online[int(key.decode().split("-")[1]) * hours * 3600 + (v["TS"] - telemetry.START_MS) // 1000] = True
        same_alerts(online, offline, score, card["threshold"])
        got, want = alarms(online, label, car, car_hours), alarms(offline, label, car, car_hours)
        print(f"   autoencoder@1: {int(online.sum())} alerts; from the topic {got}")
        for k in ["event_precision", "event_recall", "episode_recall", "false_alarms_per_car_hour"]:
            assert abs(got[k] - want[k]) <= 1e-3, (k, got[k], want[k])

        # Per window: the Gaussian model. A car's last windows never close (no later event past their
        # grace period): only windows that closed are compared.
        folder = os.path.join(models, "gaussian_20s/2")
        card = json.load(open(os.path.join(folder, "card.json")))
        size, advance = card["window"]["size_seconds"], card["window"]["advance_seconds"]
        w = telemetry.windows(cars, hours, seed, 3.0, size, advance)
        per_car = len(w.car) // cars
        closed = w.end_s + 10 < hours * 3600 - advance
        wscore = session(os.path.join(folder, "model.onnx")).run(["score"], {"X": w.features.astype(np.float32)})[0]
        offline = (wscore >= card["threshold"]) & closed
        online = np.zeros(len(w.car), dtype=bool)
        for _, v in topic_records(ctx.broker.bootstrap, "CAR_ALERTS", offline.sum() * 0.99):
            assert v["VERSION"] == 2, v
            start = (v["WINDOW_START"] - telemetry.START_MS) // 1000
            # Windows that begin before a car's first reading are partial: not scored.
            assert start >= 0, v
            online[int(v["CAR"].split("-")[1]) * per_car + start // advance] = True
        online &= closed
        same_alerts(online, offline, wscore, card["threshold"])
        timing = (w.end_s[closed], w.onset_s[closed])
        got = alarms(online[closed], w.label[closed], w.car[closed], car_hours, step=advance, timing=timing)
        want = alarms(offline[closed], w.label[closed], w.car[closed], car_hours, step=advance, timing=timing)
        print(f"   gaussian_20s@2: {int(online.sum())} window alerts; from the topic {got}")
        for k in ["event_precision", "event_recall", "episode_recall", "false_alarms_per_car_hour"]:
            assert abs(got[k] - want[k]) <= 1e-3, (k, got[k], want[k])
        assert got["episode_recall"] >= 0.95 and got["false_alarms_per_car_hour"] <= 0.5, got
    finally:
        server.stop()


class Ctx:
    pass


def varint(n):
    """An unsigned base-128 varint (protobuf's, and Avro's after zig-zag)."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_long(n):
    return varint((n << 1) ^ (n >> 63))


def read_avro_long(buf, pos):
    shift, z = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos


def test_avro_through_schema_registry(ctx):
    """A producer registers its Avro schema with Eddy's own Schema Registry API and writes framed records;
    Eddy infers the stream's columns from the schema, and the CSAS output is Avro a consumer decodes with
    the schema fetched by the id each record carries."""
    import struct
    url = ctx.server.url
    schema = {"type": "record", "name": "Reading", "fields": [
        {"name": "sensor", "type": "string"},
        {"name": "temp", "type": "double"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["TEMP", "HUM"]}}]}
    status, body = post(url + "/subjects/avro_readings-value/versions", {"schema": json.dumps(schema)})
    assert status == 200, body
    schema_id = json.loads(body)["id"]
    status, body = post(url + "/ksql", {"ksql":
        "CREATE STREAM avro_readings WITH (kafka_topic='avro_readings', value_format='AVRO', partitions=2);"
        "CREATE STREAM avro_hot WITH (value_format='AVRO') AS "
        "SELECT sensor, temp * 2 AS twice, kind FROM avro_readings WHERE temp > 30;",
        "streamsProperties": {"auto.offset.reset": "earliest"}})
    assert status == 200, body
    p = Producer({"bootstrap.servers": ctx.broker.bootstrap})
    expected = set()
    for i in range(1000):
        sensor, temp, kind = f"s-{i % 7}", 20.0 + (i % 20), i % 2
        sensor_bytes = sensor.encode()
        payload = (b"\x00" + schema_id.to_bytes(4, "big") + avro_long(len(sensor_bytes)) + sensor_bytes
                   + struct.pack("<d", temp) + avro_long(kind))
        p.produce("avro_readings", payload, partition=i % 2)
        if temp > 30:
            expected.add((i, sensor, temp * 2, ["TEMP", "HUM"][kind]))
    p.produce("avro_readings", b'{"not": "avro"}', partition=0)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": ctx.broker.bootstrap, "group.id": f"avro-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["AVRO_HOT"])
    rows, schemas = [], {}
    deadline = time.time() + 60
    while len(rows) < len(expected) and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=1.0):
            if m.error():
                continue
            v = m.value()
            assert v[0] == 0, "output records carry the schema registry framing"
            out_id = int.from_bytes(v[1:5], "big")
            if out_id not in schemas:
                with urllib.request.urlopen(f"{url}/schemas/ids/{out_id}", timeout=10) as r:
                    schemas[out_id] = json.loads(json.loads(r.read())["schema"])
            fields = [f["name"] for f in schemas[out_id]["fields"]]
            assert fields == ["SENSOR", "TWICE", "KIND"], fields
            pos, row = 5, []
            for kind in ["string", "double", "string"]:
                branch, pos = read_avro_long(v, pos)
                assert branch == 1, "no nulls expected"
                if kind == "double":
                    row.append(struct.unpack("<d", v[pos:pos + 8])[0])
                    pos += 8
                else:
                    n, pos = read_avro_long(v, pos)
                    row.append(v[pos:pos + n].decode())
                    pos += n
            assert pos == len(v), "the whole record is read"
            rows.append(tuple(row))
    c.close()
    assert sorted(rows) == sorted((s, t, k) for _, s, t, k in expected), \
        f"{len(rows)} rows, {len(expected)} expected"


def run_each(tests, ctx, only):
    """Runs each of `tests` (all, or those `only` names) on `ctx`, printing PASS or FAIL with the
    traceback; returns how many failed."""
    failures = 0
    for test in tests:
        if only and test.__name__ not in only:
            continue
        started = time.time()
        try:
            test(ctx)
            print(f"PASS {test.__name__} ({time.time() - started:.1f}s)")
        except Exception:
            failures += 1
            print(f"FAIL {test.__name__}")
            traceback.print_exc()
    return failures


def run_with_broker(tests, ctx, only):
    """Runs `tests` (all, or those `only` names) on `ctx` with a fresh broker (`ctx.broker`) and
    servers of their own; exits non-zero if any failed."""
    ctx.broker = Broker()
    try:
        failures = run_each(tests, ctx, only)
    finally:
        ctx.broker.stop()
    if failures:
        sys.exit(1)


def main_with_broker(tests):
    """The main of a test file whose tests start servers of their own: `--server-bin`, then `tests` with
    a fresh broker."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    args = ap.parse_args()
    ctx = Ctx()
    ctx.server_bin = os.path.abspath(args.server_bin)
    run_with_broker(tests, ctx, None)


def run(tests, name):
    """Runs `tests` (functions of a context with a broker and a server) against a fresh broker and
    server, or the one `--only` names; exits non-zero if any failed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--only", help="run only the test with this name")
    args = ap.parse_args()
    ctx = Ctx()
    ctx.broker = Broker()
    data = tempfile.mkdtemp(prefix=f"eddy-{name}-")
    failures = 0
    try:
        ctx.server = Server(os.path.abspath(args.server_bin), ctx.broker.bootstrap, data, f"{name}{os.getpid()}")
        failures = run_each(tests, ctx, [args.only] if args.only else None)
    finally:
        if getattr(ctx, "server", None):
            ctx.server.stop()
        ctx.broker.stop()
    if failures:
        print(f"{failures} test(s) failed; server log in {data}/server.log")
        sys.exit(1)


def main():
    run([test_pipeline, test_push_query_limit, test_inserts_stream, test_print, test_bad_requests, test_metrics,
         test_restart,
         test_windowed_aggregation_restart, test_repartitioned_aggregation_restart,
         test_scale_out_moves_state, test_servers_follow_each_other, test_table_aggregation_fails_over,
         test_avro_through_schema_registry, test_udf_plugins, test_anomaly_detection], "e2e")


if __name__ == "__main__":
    main()
