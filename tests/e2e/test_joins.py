"""Joins through the real broker, checked against an independent computation of the expected output.

Run by scripts/test:  python tests/e2e/test_joins.py --server-bin target/release/eddy-server
"""

import json
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from test_e2e import post, run

CARS = 1_000
UNKNOWN_CARS = 100
READINGS = 200_000
PARTITIONS = 4
T0 = 1_700_000_000_000


def reading_car(j):
    return f"car-{(j * 7919) % (CARS + UNKNOWN_CARS)}"


def reading_time(j):
    return T0 + 10 + 2 * j


def model_changes():
    """(car, time, model): every car's first model before all readings; a third of the cars change model
    twice, at odd times between readings (so no change shares a time with a reading)."""
    changes = [(f"car-{i}", T0, f"m{i}-0") for i in range(CARS)]
    for i in range(0, CARS, 3):
        changes.append((f"car-{i}", reading_time(READINGS // 3 + i * 7) + 1, f"m{i}-1"))
        changes.append((f"car-{i}", reading_time(2 * READINGS // 3 + i * 5) + 1, f"m{i}-2"))
    return sorted(changes, key=lambda c: c[1])


def expected_models():
    """The model each reading's car has at the reading's time (None for cars the table never had)."""
    by_car = {}
    for car, t, model in model_changes():
        by_car.setdefault(car, []).append((t, model))
    want = {}
    for j in range(READINGS):
        model = None
        for t, m in by_car.get(reading_car(j), []):
            if t < reading_time(j):
                model = m
        want[j] = model
    return want


def create_topics(bootstrap, names):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        f.result(30)


def test_stream_table_join(ctx):
    """A LEFT JOIN CSAS started over full topics gives every reading the model its car had at the
    reading's time: the table's changes and the readings are processed in time order across the sides."""
    bootstrap = ctx.broker.bootstrap
    create_topics(bootstrap, ["jcars", "jreadings"])
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for car, t, model in model_changes():
        p.produce("jcars", json.dumps({"MODEL": model}).encode(), key=car.encode(), timestamp=t)
    for j in range(READINGS):
        p.produce("jreadings", json.dumps({"SEQ": j, "SPEED": j % 130}).encode(), key=reading_car(j).encode(),
                  timestamp=reading_time(j))
        if j % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0, "not every record was delivered"
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        "CREATE TABLE jcars (id STRING PRIMARY KEY, model STRING) "
        "WITH (kafka_topic='jcars', key_format='KAFKA', value_format='JSON');"
        "CREATE STREAM jreadings (car STRING KEY, seq INT, speed INT) "
        "WITH (kafka_topic='jreadings', key_format='KAFKA', value_format='JSON');"
        "CREATE STREAM jenriched AS SELECT r.car AS car, seq, speed, model "
        "FROM jreadings r LEFT JOIN jcars c ON r.car = c.id;"),
        "streamsProperties": {"auto.offset.reset": "earliest"}})
    assert status == 200, body
    want = expected_models()
    started = time.time()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["JENRICHED"])
    got, records = {}, 0
    deadline = time.time() + 180
    while len(got) < READINGS and time.time() < deadline:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if m.error():
                continue
            v = json.loads(m.value())
            records += 1
            got.setdefault(v["SEQ"], v["MODEL"])
            assert m.key().decode() == reading_car(v["SEQ"]), f"reading {v['SEQ']} has key {m.key()}"
    c.close()
    missing = [j for j in range(READINGS) if j not in got]
    assert not missing, f"{len(missing)} readings are missing, e.g. {missing[:5]}"
    wrong = [(j, got[j], want[j]) for j in range(READINGS) if got[j] != want[j]]
    assert not wrong, f"{len(wrong)} readings have the wrong model, e.g. (seq, got, want) {wrong[:5]}"
    unknown = sum(1 for m in want.values() if m is None)
    print(f"   {READINGS} readings joined in {time.time() - started:.1f}s ({records - READINGS} duplicates; "
          f"{unknown} of unknown cars with NULL; {len(model_changes())} table rows)")


def main():
    run([test_stream_table_join], "joins")


if __name__ == "__main__":
    main()
