"""Models as first-class citizens, through the real broker: an alias moved under a running query (hot
swap), an alias splitting rows between versions by key with a shadow version, versions pinned across a
restart, versions the plugin cannot load refused.

Run by scripts/test:  python tests/e2e/test_models.py --server-bin target/release/eddy-server [--events N]
(scripts/test runs 200,000 events through the hot swap; the issue's figure is --events 1000000).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from ksqldb import KSQLdbClient
from test_e2e import ROOT, Ctx, Server, post, run_with_broker

sys.path.insert(0, os.path.join(ROOT, "udfs/anomaly/train"))
import telemetry  # noqa: E402

PARTITIONS = 4
FEATURES = ", ".join(telemetry.FEATURES)
COLUMNS = ", ".join(f"{f} DOUBLE" for f in telemetry.FEATURES)
NORMAL = [111.54, 2461.56, 33.97, 37.17, 91.18, 97.75, 21.89, 14.13, 2.5, 2.43, 2.35, 2.37, 1.58, 14.98]
FLAT_BATTERY = NORMAL[:7] + [11.9] + NORMAL[8:]
# gaussian@1 scores these 8.65 and 729.23; its threshold is 70.7.
COMMITTED = os.path.join(ROOT, "udfs/anomaly/models")


def model_server(ctx, name):
    """A server with the UDF plugins, the committed models preloaded into its catalog (main sets
    EDDY_MODEL_DIR)."""
    data = tempfile.mkdtemp(prefix=f"eddy-models-{name}-")
    return Server(ctx.server_bin, ctx.broker.bootstrap, data, f"{name}{os.getpid()}",
                  ["--plugin-dir", os.path.join(ROOT, "target/plugins/dir")])


def version_folder(threshold):
    """gaussian@1's graph with another threshold on its card, as a model folder."""
    folder = tempfile.mkdtemp(prefix="eddy-model-version-")
    shutil.copy(os.path.join(COMMITTED, "gaussian/1/model.onnx"), folder)
    card = json.load(open(os.path.join(COMMITTED, "gaussian/1/card.json")))
    card["threshold"] = threshold
    json.dump(card, open(os.path.join(folder, "card.json"), "w"))
    return folder


def ksql(server, sql, **props):
    status, body = post(server.url + "/ksql", {"ksql": sql, "streamsProperties": props})
    assert status == 200, f"{sql}\n{body}"
    return json.loads(body)


def produce_readings(bootstrap, topic, ids, pace=None):
    """Readings `ids` (the flat battery on every third), keyed by car, spread over the partitions by id;
    `pace`: records per second."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    started = time.time()
    for n, i in enumerate(ids):
        values = FLAT_BATTERY if i % 3 == 0 else NORMAL
        p.produce(topic, json.dumps({"id": i, **dict(zip(telemetry.FEATURES, values))}).encode(),
                  key=f"car-{i % 100}".encode(), partition=i % PARTITIONS)
        if n % 2000 == 0:
            p.poll(0)
            if pace:
                ahead = n / pace - (time.time() - started)
                if ahead > 0:
                    time.sleep(ahead)
    assert p.flush(60) == 0


def read_output(bootstrap, topic, want, timeout=300):
    """Every record of `topic` as (partition, offset, value), once `want` arrived or nothing came for 15 s."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    rows, idle, deadline = [], 0, time.time() + timeout
    while time.time() < deadline and idle < 15 and len(rows) < want:
        fresh = [m for m in c.consume(num_messages=10000, timeout=1.0) if not m.error()]
        idle = 0 if fresh else idle + 1
        rows += [(m.partition(), m.offset(), json.loads(m.value())) for m in fresh]
    c.close()
    return rows


def count_records(bootstrap, topic):
    """How many records the topic's partitions hold."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{time.time()}"})
    total = 0
    for p in range(PARTITIONS):
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += high - low
    c.close()
    return total


def test_hot_swap(ctx):
    """A CSAS scores readings through gaussian@production while the alias moves from version 1 to
    version 2 (another threshold) mid-stream: every reading is scored exactly once, each partition by
    version 1 up to one point and by version 2 after it, alerts follow each version's threshold, and
    the query is never restarted."""
    server = model_server(ctx, "swap")
    events = ctx.events
    try:
        ksql(server, f"CREATE MODEL gaussian VERSION 2 FROM '{version_folder(1000.0)}';")
        ksql(server, "ALTER MODEL gaussian SET ALIAS production = 1;")
        ksql(server, f"CREATE STREAM readings (car_id STRING KEY, id BIGINT, {COLUMNS}) WITH "
                     f"(kafka_topic='swap_readings', value_format='JSON', partitions={PARTITIONS});")
        ksql(server, f"CREATE STREAM swap_scored AS SELECT car_id, id, ANOMALY('gaussian@production', {FEATURES}) "
                     "AS a FROM readings;", **{"auto.offset.reset": "earliest"})
        pid = server.proc.pid
        # The readings arrive over about ten seconds; the alias moves once a third are scored.
        producer = threading.Thread(target=produce_readings,
                                    args=(ctx.broker.bootstrap, "swap_readings", range(events), events / 10))
        producer.start()
        deadline = time.time() + 120
        while count_records(ctx.broker.bootstrap, "SWAP_SCORED") < events // 3:
            assert time.time() < deadline, "the query scored too little"
            time.sleep(0.05)
        moved_at = count_records(ctx.broker.bootstrap, "SWAP_SCORED")
        body = ksql(server, "ALTER MODEL gaussian SET ALIAS production = 2;")
        assert "moved from version 1 to 2" in json.dumps(body), body
        producer.join()
        rows = read_output(ctx.broker.bootstrap, "SWAP_SCORED", events)
        ids = [v["ID"] for _, _, v in rows]
        assert len(ids) == events and len(set(ids)) == events, \
            f"{len(ids)} rows, {len(set(ids))} distinct readings of {events}"
        per_version = {1: 0, 2: 0}
        for partition in range(PARTITIONS):
            in_order = [v for p, _, v in sorted(r for r in rows if r[0] == partition)]
            versions = [v["A"]["VERSION"] for v in in_order]
            switch = versions.index(2) if 2 in versions else len(versions)
            assert versions == [1] * switch + [2] * (len(versions) - switch), \
                f"partition {partition}: versions not one run of 1 then one of 2"
            for v in in_order:
                a = v["A"]
                per_version[a["VERSION"]] += 1
                flat = v["ID"] % 3 == 0
                threshold = 70.70787048339844 if a["VERSION"] == 1 else 1000.0
                assert abs(a["SCORE"] - (729.2305908203125 if flat else 8.654047012329102)) < 1e-3, v
                assert a["IS_ANOMALY"] == (a["SCORE"] >= threshold), v
                assert a["CAUSE"] == ("battery_v" if flat else "speed_kmh"), v
        assert per_version[1] >= moved_at * 0.9 and per_version[2] > 0, (per_version, moved_at)
        queries = KSQLdbClient(server.url).ksql("SHOW QUERIES;")[0]["queries"]
        assert [q["state"] for q in queries] == ["RUNNING"], queries
        assert server.proc.poll() is None and server.proc.pid == pid
        print(f"  {events} readings: {per_version[1]} scored by version 1, {per_version[2]} by version 2 "
              f"(alias moved after {moved_at})")
    finally:
        server.stop()


def fnv1a_bucket(key):
    """The bucket (0-99) the anomaly plugin sends a key to: FNV-1a 64 of its bytes, modulo 100."""
    h = 0xcbf29ce484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % 100


def scrape(server):
    """Prometheus samples of /metrics: {(name, frozenset(labels)): value}."""
    import urllib.request
    text = urllib.request.urlopen(server.url + "/metrics", timeout=30).read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        pairs = frozenset(tuple(p.split("=", 1)) for p in labels.rstrip("}").split(",") if p)
        samples[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return samples


def test_shadow_and_split(ctx):
    """An alias splitting rows 90/10 between versions 1 and 2 by key, with version 3 in shadow: each
    reading is scored by the version its key's bucket picks (within a point of 90/10 over the run), the
    shadow's version never reaches the output, and /metrics counts rows, alerts, time and scores per
    version and role."""
    server = model_server(ctx, "split")
    events = ctx.events
    try:
        ksql(server, f"CREATE MODEL gaussian VERSION 2 FROM '{version_folder(1000.0)}';")
        ksql(server, f"CREATE MODEL gaussian VERSION 3 FROM '{version_folder(1.0)}';")
        body = ksql(server, "ALTER MODEL gaussian SET ALIAS production = 1 WEIGHT 90, 2 WEIGHT 10 SHADOW 3;")
        assert "points at version 1 WEIGHT 90, 2 WEIGHT 10 SHADOW 3" in json.dumps(body), body
        ksql(server, f"CREATE STREAM readings (car_id STRING KEY, id BIGINT, {COLUMNS}) WITH "
                     f"(kafka_topic='split_readings', value_format='JSON', partitions={PARTITIONS});")
        ksql(server, f"CREATE STREAM split_scored AS SELECT car_id, id, "
                     f"ANOMALY('gaussian@production', ARRAY[{FEATURES}], car_id) AS a FROM readings;",
             **{"auto.offset.reset": "earliest"})
        p = Producer({"bootstrap.servers": ctx.broker.bootstrap, "linger.ms": 5})
        for i in range(events):
            values = FLAT_BATTERY if i % 3 == 0 else NORMAL
            p.produce("split_readings", json.dumps({"id": i, **dict(zip(telemetry.FEATURES, values))}).encode(),
                      key=f"car-{i}".encode(), partition=i % PARTITIONS)
            if i % 5000 == 0:
                p.poll(0)
        assert p.flush(60) == 0
        rows = read_output(ctx.broker.bootstrap, "SPLIT_SCORED", events)
        assert len(rows) == events, len(rows)
        versions = {1: 0, 2: 0}
        for _, _, v in rows:
            want = 1 if fnv1a_bucket(f"car-{v['ID']}") < 90 else 2
            assert v["A"]["VERSION"] == want, v
            versions[want] += 1
        share = versions[1] / events * 100
        assert abs(share - 90) <= 1, versions
        time.sleep(1)
        m = scrape(server)

        def figure(name, version, role):
            return sum(value for (n, labels), value in m.items()
                       if n == f"eddy_plugin_{name}" and ("version", str(version)) in labels
                       and ("role", role) in labels and ("model", "gaussian") in labels)
        assert figure("model_rows_total", 1, "live") == versions[1], m
        assert figure("model_rows_total", 2, "live") == versions[2]
        assert figure("model_rows_total", 3, "shadow") == events
        assert figure("model_alerts_total", 3, "shadow") == events  # threshold 1: every score
        assert figure("model_alerts_total", 2, "live") == 0  # threshold 1000: none
        flats_v1 = sum(1 for _, _, v in rows if v["A"]["VERSION"] == 1 and v["ID"] % 3 == 0)
        assert figure("model_alerts_total", 1, "live") == flats_v1
        assert figure("model_inference_seconds_total", 1, "live") > 0
        assert figure("model_score_count", 3, "shadow") == events
        print(f"  {events} readings: {share:.2f} % by version 1, {100 - share:.2f} % by version 2; "
              f"version 3 scored all of them in shadow")
    finally:
        server.stop()


def test_pinned_versions_survive_a_restart(ctx):
    """A query naming a model without a version runs the version that was latest when it was created,
    after a new version is registered and the server restarts; a query created after that runs the new
    one. DESCRIBE MODEL says which query runs which version."""
    server = model_server(ctx, "pinned")
    try:
        ksql(server, f"CREATE STREAM readings (car_id STRING KEY, id BIGINT, {COLUMNS}) WITH "
                     f"(kafka_topic='pinned_readings', value_format='JSON', partitions={PARTITIONS});")
        earliest = {"auto.offset.reset": "earliest"}
        ksql(server, f"CREATE STREAM old_scores AS SELECT car_id, id, ANOMALY('gaussian', {FEATURES}) AS a "
                     "FROM readings;", **earliest)
        # Version 2 alerts on everything (threshold 1).
        ksql(server, f"CREATE MODEL gaussian FROM '{version_folder(1.0)}';")
        server.stop()
        server.start()
        ksql(server, f"CREATE STREAM new_scores AS SELECT car_id, id, ANOMALY('gaussian', {FEATURES}) AS a "
                     "FROM readings;", **earliest)
        produce_readings(ctx.broker.bootstrap, "pinned_readings", range(300))
        old = read_output(ctx.broker.bootstrap, "OLD_SCORES", 300, timeout=60)
        new = read_output(ctx.broker.bootstrap, "NEW_SCORES", 300, timeout=60)
        assert len(old) == 300 and len(new) == 300, (len(old), len(new))
        assert {v["A"]["VERSION"] for _, _, v in old} == {1}
        assert {v["A"]["VERSION"] for _, _, v in new} == {2}
        assert [v["A"]["IS_ANOMALY"] for _, _, v in old] == [v["ID"] % 3 == 0 for _, _, v in old]
        assert all(v["A"]["IS_ANOMALY"] for _, _, v in new)
        described = ksql(server, "DESCRIBE MODEL gaussian;")[0]
        uses = sorted((q["queryId"], q["uses"]) for q in described["queries"])
        assert uses == [("CSAS_NEW_SCORES_1", "gaussian@2"), ("CSAS_OLD_SCORES_0", "gaussian@1")], uses
    finally:
        server.stop()


def test_versions_the_plugin_cannot_load_are_refused(ctx):
    """A graph tract cannot load is refused when registered, with tract's reason; an alias cannot point
    at a version that does not exist; a version a query runs cannot be dropped."""
    server = model_server(ctx, "refused")
    try:
        broken = version_folder(5.0)
        open(os.path.join(broken, "model.onnx"), "wb").write(b"not a model")
        status, body = post(server.url + "/ksql", {"ksql": f"CREATE MODEL gaussian FROM '{broken}';"})
        assert status == 400 and "cannot be loaded by tract" in body, body
        assert ksql(server, "SHOW MODELS;")[0]["models"][2]["versions"] == [1]
        status, body = post(server.url + "/ksql", {"ksql": "ALTER MODEL gaussian SET ALIAS production = 7;"})
        assert status == 400 and "has no version 7 (it has 1)" in body, body
        ksql(server, f"CREATE STREAM readings (car_id STRING KEY, id BIGINT, {COLUMNS}) WITH "
                     f"(kafka_topic='refused_readings', value_format='JSON', partitions=1);")
        ksql(server, f"CREATE STREAM scores AS SELECT car_id, IS_ANOMALY('gaussian@1', {FEATURES}) AS a FROM readings;")
        status, body = post(server.url + "/ksql", {"ksql": "DROP MODEL gaussian;"})
        assert status == 400 and "queries use it (CSAS_SCORES_0)" in body, body
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--events", type=int, default=200_000, help="readings through the hot swap")
    ap.add_argument("--only", action="append", help="run only the test with this name")
    args = ap.parse_args()
    ctx = Ctx()
    ctx.server_bin = os.path.abspath(args.server_bin)
    ctx.events = args.events
    os.environ["EDDY_MODEL_DIR"] = COMMITTED
    run_with_broker([test_hot_swap, test_shadow_and_split, test_pinned_versions_survive_a_restart,
                     test_versions_the_plugin_cannot_load_are_refused], ctx, args.only)


if __name__ == "__main__":
    main()
