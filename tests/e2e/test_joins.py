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


def produce_cars_and_readings(bootstrap, suffix, readings):
    """Every model change into jcars<suffix>, and readings `readings` (a range) into jreadings<suffix>."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    if readings.start == 0:
        for car, t, model in model_changes():
            p.produce(f"jcars{suffix}", json.dumps({"MODEL": model}).encode(), key=car.encode(), timestamp=t)
    for j in readings:
        p.produce(f"jreadings{suffix}", json.dumps({"SEQ": j, "SPEED": j % 130}).encode(),
                  key=reading_car(j).encode(), timestamp=reading_time(j))
        if j % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0, "not every record was delivered"


def create_join(ctx, suffix):
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        f"CREATE TABLE jcars{suffix} (id STRING PRIMARY KEY, model STRING) "
        f"WITH (kafka_topic='jcars{suffix}', key_format='KAFKA', value_format='JSON');"
        f"CREATE STREAM jreadings{suffix} (car STRING KEY, seq INT, speed INT) "
        f"WITH (kafka_topic='jreadings{suffix}', key_format='KAFKA', value_format='JSON');"
        f"CREATE STREAM jenriched{suffix} AS SELECT r.car AS car, seq, speed, model "
        f"FROM jreadings{suffix} r LEFT JOIN jcars{suffix} c ON r.car = c.id;"),
        "streamsProperties": {"auto.offset.reset": "earliest"}})
    assert status == 200, body


def joined_models(bootstrap, topic, until=READINGS, timeout=180):
    """The model each reading got (the first time it was written), and how many records were read."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, records = {}, 0
    deadline = time.time() + timeout
    while len(got) < until and time.time() < deadline:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if m.error():
                continue
            v = json.loads(m.value())
            records += 1
            got.setdefault(v["SEQ"], v["MODEL"])
            assert m.key().decode() == reading_car(v["SEQ"]), f"reading {v['SEQ']} has key {m.key()}"
    c.close()
    return got, records


def check_models(got):
    want = expected_models()
    missing = [j for j in range(READINGS) if j not in got]
    assert not missing, f"{len(missing)} readings are missing, e.g. {missing[:5]}"
    wrong = [(j, got[j], want[j]) for j in range(READINGS) if got[j] != want[j]]
    assert not wrong, f"{len(wrong)} readings have the wrong model, e.g. (seq, got, want) {wrong[:5]}"
    return sum(1 for m in want.values() if m is None)


def test_stream_table_join(ctx):
    """A LEFT JOIN CSAS started over full topics gives every reading the model its car had at the
    reading's time: the table's changes and the readings are processed in time order across the sides."""
    create_topics(ctx.broker.bootstrap, ["jcars", "jreadings"])
    produce_cars_and_readings(ctx.broker.bootstrap, "", range(READINGS))
    create_join(ctx, "")
    started = time.time()
    got, records = joined_models(ctx.broker.bootstrap, "JENRICHED")
    unknown = check_models(got)
    print(f"   {READINGS} readings joined in {time.time() - started:.1f}s ({records - READINGS} duplicates; "
          f"{unknown} of unknown cars with NULL; {len(model_changes())} table rows)")


def test_stream_table_join_restart(ctx):
    """kill -9 half-way: the restarted query reads its table back from the table's topic, so the
    readings after the restart still meet the model current at their time."""
    create_topics(ctx.broker.bootstrap, ["jcars2", "jreadings2"])
    produce_cars_and_readings(ctx.broker.bootstrap, "2", range(READINGS // 2))
    create_join(ctx, "2")
    joined_models(ctx.broker.bootstrap, "JENRICHED2", until=READINGS // 4, timeout=60)
    ctx.server.kill9()
    ctx.server.start()
    produce_cars_and_readings(ctx.broker.bootstrap, "2", range(READINGS // 2, READINGS))
    got, records = joined_models(ctx.broker.bootstrap, "JENRICHED2")
    check_models(got)
    print(f"   {READINGS} readings joined across a kill -9 ({records - READINGS} written twice)")


def main():
    run([test_stream_table_join, test_stream_table_join_restart], "joins")


if __name__ == "__main__":
    main()
