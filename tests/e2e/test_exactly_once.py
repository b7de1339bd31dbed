"""Exactly-once output through the real broker, with the server killed by SIGKILL again and again.

A stateless CSAS and a windowed CTAS (COUNT and SUM per key and 10 s tumbling window, grouped by the key) read
N records from their input topic. The server first aborts three times at exact steps of the protocol (crash points,
EDDY_CRASH_POINT: output acknowledged, checkpoint not written), with half the input there; then the rest comes, and
the server is killed with SIGKILL K times, each time once both queries' consumed counters have moved again since
the restart, and restarted. Then the output must hold every expected
record exactly once: the stream one record per input record, the table the exact count and sum per window and
no record twice (a window's count only grows, so a repeated (window, value) pair is a repeated write).

    python tests/e2e/test_exactly_once.py --server-bin target/release/eddy-server \\
        [--records 1000000] [--kills 10] [--guarantee exactly_once_v2|at_least_once]

With --guarantee at_least_once the same run reports the duplicates at-least-once leaves (and does not fail on
them). scripts/test runs a short version (exactly-once, 100,000 records, 3 kills).
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter

from confluent_kafka import ConsumerGroupTopicPartitions, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from test_e2e import Broker, Server
from test_hostile import ksql, query_stats

KEYS = 1_000
BASE_TS = 1_700_000_000_000
PARTITIONS = 4
SERVICE = f"eos{os.getpid()}_"


def event(i):
    key = f"k-{i % KEYS}"
    return key, {"SEQ": i, "V": (i * 7919) % 1000}, BASE_TS + i


def produce(bootstrap, topic, n, seconds=0.0, first=0):
    """Produces events first..n, spread over about `seconds` (all at once without)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000, "log_level": 3,
                  "partitioner": "murmur2_random"})
    started = time.time()
    for i in range(first, n):
        key, value, ts = event(i)
        while True:
            try:
                p.produce(topic, json.dumps(value).encode(), key=key.encode(), timestamp=ts)
                break
            except BufferError:
                # The client's queue is full (the broker is slow or unreachable): wait for room.
                p.poll(0.1)
        if i % 10_000 == 0:
            p.poll(0)
            ahead = started + seconds * (i - first) / (n - first) - time.time()
            if ahead > 0:
                time.sleep(ahead)
    assert p.flush(120) == 0, "not every record was delivered"


def expected_windows(n):
    want = {}
    for i in range(n):
        key, value, ts = event(i)
        start = ts - ts % 10_000
        count, total = want.get((key, start), (0, 0))
        want[(key, start)] = (count + 1, total + value["V"])
    return want


def last_rows(rows):
    """The last (COUNT, SUM) of each (key, window start) in the table's records."""
    last = {}
    for key, value in rows:
        v = json.loads(value)
        last[(key[:-8].decode(), int.from_bytes(key[-8:], "big"))] = (v["N"], v["TOTAL"])
    return last


def read_until_complete(bootstrap, records, want, timeout=900, linger=5.0):
    """Reads both outputs until the stream has every input's record and the table's last rows equal `want` (or
    time runs out), then `linger` seconds more, so that records written twice late are seen too."""
    readers = {}
    for topic in ("EO_COPY", "EO_WINDOWS"):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}-{time.time()}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        readers[topic] = (c, [])
    seqs, last = set(), {}
    deadline, done_at = time.time() + timeout, None
    while time.time() < deadline and (done_at is None or time.time() < done_at + linger):
        for topic, (c, out) in readers.items():
            got = [(m.key(), m.value()) for m in c.consume(num_messages=10000, timeout=0.5) if not m.error()]
            out.extend(got)
            if topic == "EO_COPY":
                seqs.update(json.loads(v)["SEQ"] for _, v in got)
            else:
                last.update(last_rows(got))
        if done_at is None and len(seqs) == records and last == want:
            done_at = time.time()
    for c, _ in readers.values():
        c.close()
    return readers["EO_COPY"][1], readers["EO_WINDOWS"][1]


def check_output(bootstrap, records, exactly_once):
    """Reads EO_COPY and EO_WINDOWS until complete and checks them: every input record in the stream, every
    window exact in the table, and (exactly-once) nothing twice in either."""
    started = time.time()
    want = expected_windows(records)
    copies, rows = read_until_complete(bootstrap, records, want)
    seqs = Counter(json.loads(v)["SEQ"] for _, v in copies)
    lost = [i for i in range(records) if i not in seqs]
    stream_dups = sum(c - 1 for c in seqs.values() if c > 1)
    table_dups = sum(c - 1 for c in Counter(rows).values() if c > 1)
    last = last_rows(rows)
    wrong = [(w, last.get(w), n) for w, n in want.items() if last.get(w) != n]
    print(f"   output complete after {time.time() - started:.1f}s: stream {len(copies)} records for {records} "
          f"inputs, {stream_dups} duplicates, {len(lost)} lost; table {len(rows)} records, {table_dups} "
          f"duplicates, {len(want) - len(wrong)}/{len(want)} windows exact")
    assert not lost, f"{len(lost)} input records have no output, e.g. {lost[:5]}"
    assert not wrong, f"{len(wrong)} windows differ (window, got, want), e.g. {wrong[:3]}"
    if exactly_once:
        assert stream_dups == 0, f"{stream_dups} duplicate records in the stream"
        assert table_dups == 0, f"{table_dups} duplicate records in the table"


def consumed(url):
    stats = query_stats(url)
    return {sink: s["statistics"]["consumed"] for sink, s in stats.items()}


def caught_up(bootstrap, url, sink, topic):
    """Whether the query writing `sink` has committed everything in its input `topic`."""
    query = query_stats(url)[sink]["id"]
    group = f"_eddy-{SERVICE}_query_{query}"
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    # Read with the admin client: a consumer with the query's group id would disturb its group.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group, parts)
    committed = list(admin.list_consumer_group_offsets([request]).values())[0].result().topic_partitions
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{time.time()}"})
    try:
        ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
    finally:
        c.close()
    return all(tp.offset >= ends[tp.partition] for tp in committed)


def crash_at(server, point, statements=()):
    """Restarts the server armed to abort the `n`-th time it passes `point` (EDDY_CRASH_POINT, `point` being
    "name:n"), runs `statements` (sql, properties), and waits for the abort."""
    server.kill9()
    server.env = {"EDDY_CRASH_POINT": point}
    server.start()
    server.env = {}
    for sql, props in statements:
        ksql(server.url, sql, props)
    try:
        code = server.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the server never reached crash point {point}")
    assert code == -signal.SIGABRT, f"the server exited with {code}, not at crash point {point}"
    print(f"   crashed at {point}")


def run(server_bin, records, kills, guarantee, seed):
    rng = random.Random(seed)
    broker = Broker()
    data = tempfile.mkdtemp(prefix="eddy-eos-")
    server = None
    try:
        server = Server(os.path.abspath(server_bin), broker.bootstrap, data, SERVICE,
                        ["--processing-guarantee", guarantee])
        url = server.url
        ksql(url, "CREATE STREAM eo_in (k STRING KEY, seq BIGINT, v INT) "
                  f"WITH (kafka_topic='eo_in', value_format='JSON', partitions={PARTITIONS});")
        started = time.time()
        half = records // 2
        produce(broker.bootstrap, "eo_in", half)
        print(f"   {half} records in the input ({time.time() - started:.1f}s)")
        props = {"auto.offset.reset": "earliest"}
        # Crashes at the exact steps where one leaves output the next start must not write again: between a
        # batch's acknowledged output and its checkpoints, between an aggregation write's acknowledged output
        # and its state (the second time while that write is being made again).
        copy = ("CREATE STREAM eo_copy AS SELECT k, seq, v FROM eo_in;", props)
        windows = ("CREATE TABLE eo_windows AS SELECT k, COUNT(*) AS n, SUM(v) AS total FROM eo_in "
                   "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY k EMIT CHANGES;",
                   dict(props, **{"ksql.streams.commit.interval.ms": "200"}))
        if guarantee == "exactly_once_v2":
            crash_at(server, "rows-settled:5", [copy])
            crash_at(server, "output-settled:3", [windows])
            crash_at(server, "output-settled:1")
            server.start()
        else:
            # The crash points are steps of the exactly-once protocol: at-least-once only gets the kills.
            for sql, query_props in (copy, windows):
                ksql(url, sql, query_props)
        produce(broker.bootstrap, "eo_in", records, first=half)
        print(f"   {records} records in the input")
        sinks = ("EO_COPY", "EO_WINDOWS")
        for k in range(kills):
            # Kill at a different point each time: once both queries have consumed a random amount again.
            at = rng.randrange(1, max(2, records // (2 * kills)))
            # A query that has caught up with its input has nothing left to consume.
            deadline = time.time() + 20
            while not all(consumed(url).get(s, 0) >= at or caught_up(broker.bootstrap, url, s, "eo_in")
                          for s in sinks) and time.time() < deadline:
                time.sleep(0.2)
            moved = consumed(url)
            server.kill9()
            print(f"   kill {k + 1}: consumed since the last start {moved}")
            server.start()
        print(f"   {kills} kills with SIGKILL")
        check_output(broker.bootstrap, records, exactly_once=guarantee == "exactly_once_v2")
        states = {s: d["state"] for s, d in query_stats(url).items()}
        assert all(state == "RUNNING" for state in states.values()), states
    except Exception:
        traceback.print_exc()
        print(f"FAIL: server log in {data}/server.log")
        return False
    finally:
        if server:
            server.stop()
        broker.stop()
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--guarantee", default="exactly_once_v2", choices=["exactly_once_v2", "at_least_once"])
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    started = time.time()
    ok = run(args.server_bin, args.records, args.kills, args.guarantee, args.seed)
    print(f"{'PASS' if ok else 'FAIL'} test_exactly_once ({time.time() - started:.1f}s)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
