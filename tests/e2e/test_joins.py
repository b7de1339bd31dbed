"""Joins through the real broker, checked against an independent computation of the expected output.

Run by scripts/test:  python tests/e2e/test_joins.py --server-bin target/release/eddy-server
"""

import json
import threading
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
    """Readings `readings` (a range) into jreadings<suffix> and the model changes of their time span
    into jcars<suffix>, in time order, as they would come from cars and a fleet system (the first
    models with the first readings, the changes after the last reading with it)."""
    start = reading_time(readings.start) if readings.start else float("-inf")
    end = reading_time(readings.stop) if readings.stop < READINGS else float("inf")
    events = [(t, "jcars", car, {"MODEL": model}) for car, t, model in model_changes() if start <= t < end]
    events += [(reading_time(j), "jreadings", reading_car(j), {"SEQ": j, "SPEED": j % 130}) for j in readings]
    events.sort(key=lambda e: e[0])
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n, (t, topic, key, value) in enumerate(events):
        p.produce(f"{topic}{suffix}", json.dumps(value).encode(), key=key.encode(), timestamp=t)
        if n % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0, "not every record was delivered"


def create_join(ctx, suffix, props=None):
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        f"CREATE TABLE jcars{suffix} (id STRING PRIMARY KEY, model STRING) "
        f"WITH (kafka_topic='jcars{suffix}', key_format='KAFKA', value_format='JSON');"
        f"CREATE STREAM jreadings{suffix} (car STRING KEY, seq INT, speed INT) "
        f"WITH (kafka_topic='jreadings{suffix}', key_format='KAFKA', value_format='JSON');"
        f"CREATE STREAM jenriched{suffix} AS SELECT r.car AS car, seq, speed, model "
        f"FROM jreadings{suffix} r LEFT JOIN jcars{suffix} c ON r.car = c.id;"),
        # A side that ran dry holds the other back a while: the topics are written in time order,
        # but a fetch may bring one topic's newest records before the other's.
        "streamsProperties": {"auto.offset.reset": "earliest", "max.task.idle.ms": 2000, **(props or {})}})
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


def stream_table_join_restart(ctx, suffix, props=None):
    """kill -9 half-way: the restarted query reads its table back from the table's topic, so the
    readings after the restart still meet the model current at their time. Returns how many records
    were written twice."""
    create_topics(ctx.broker.bootstrap, [f"jcars{suffix}", f"jreadings{suffix}"])
    produce_cars_and_readings(ctx.broker.bootstrap, suffix, range(READINGS // 2))
    create_join(ctx, suffix, props)
    joined_models(ctx.broker.bootstrap, f"JENRICHED{suffix}", until=READINGS // 4, timeout=60)
    ctx.server.kill9()
    ctx.server.start()
    produce_cars_and_readings(ctx.broker.bootstrap, suffix, range(READINGS // 2, READINGS))
    got, records = joined_models(ctx.broker.bootstrap, f"JENRICHED{suffix}")
    check_models(got)
    return records - READINGS


def test_stream_table_join_restart(ctx):
    """At-least-once: records written twice are counted and reported."""
    twice = stream_table_join_restart(ctx, "2")
    print(f"   {READINGS} readings joined across a kill -9 ({twice} written twice)")


def test_stream_table_join_restart_exactly_once(ctx):
    """processing.guarantee=exactly_once_v2: the same, and nothing is written twice."""
    twice = stream_table_join_restart(ctx, "3", {"processing.guarantee": "exactly_once_v2"})
    assert twice == 0, f"{twice} readings were written twice"
    print(f"   {READINGS} readings joined across a kill -9, none twice")


ORDERS = 20_000
ORDER_GAP_MS = 30_000
HOUR_MS = 3_600_000
RATE = 4_000


def shipment_offset(i):
    """When order i's shipment comes, relative to the order (None: never): most within the hour after it,
    some before the order (still inside the window), some outside the window on either side."""
    kind = (i * 7919) % 20
    if kind < 2:
        return None
    if kind < 4:
        return -((i * 31) % 50 + 1) * 60_000          # up to 50 minutes before the order
    if kind == 4:
        return HOUR_MS + ((i * 17) % 60 + 1) * 60_000  # more than an hour after: outside
    if kind == 5:
        return -HOUR_MS - ((i * 13) % 60 + 1) * 60_000  # more than an hour before: outside
    return ((i * 37) % 3_540 + 1) * 1_000              # within the hour after


def order_events():
    """(time, topic, key, value) of every order and shipment, in event-time order."""
    events = []
    for i in range(ORDERS):
        t = T0 + i * ORDER_GAP_MS
        events.append((t, "orders", f"o-{i}", {"AMOUNT": i % 500}))
        offset = shipment_offset(i)
        if offset is not None:
            events.append((t + offset, "shipments", f"o-{i}", {"CARRIER": f"c{i % 7}"}))
    return sorted(events, key=lambda e: (e[0], e[1]))


def produce_events(bootstrap, events, suffix=""):
    """Produces events (into topics named with `suffix`) at about RATE records a second."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    started = time.time()
    for n, (t, topic, key, value) in enumerate(events):
        p.produce(f"{topic}{suffix}", json.dumps(value).encode(), key=key.encode(), timestamp=t)
        if n % 500 == 0:
            p.poll(0)
            ahead = n / RATE - (time.time() - started)
            if ahead > 0:
                time.sleep(ahead)
    assert p.flush(60) == 0, "not every record was delivered"


def stream_stream_join_restart(ctx, suffix, props):
    """Orders and shipments produced in event-time order at a capped rate into a JOIN ... WITHIN 1 HOURS
    GRACE PERIOD 10 MINUTES, the server killed with SIGKILL half-way and restarted: the join's buffers
    come back from its changelog, so the set of joined orders is exactly the orders with a shipment
    within the hour either side.

    Event time here runs about 100,000 times faster than the clock (70 minutes of window and grace go
    by in 60 ms of producing), so a fetch that brings one topic's newest records before the other's
    would make the other's records late: `max.task.idle.ms`, as a Kafka Streams user sets it, lets a
    side that ran dry hold the other back for a while."""
    create_topics(ctx.broker.bootstrap, [f"orders{suffix}", f"shipments{suffix}"])
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        f"CREATE STREAM orders{suffix} (id STRING KEY, amount INT) "
        f"WITH (kafka_topic='orders{suffix}', key_format='KAFKA', value_format='JSON');"
        f"CREATE STREAM shipments{suffix} (id STRING KEY, carrier STRING) "
        f"WITH (kafka_topic='shipments{suffix}', key_format='KAFKA', value_format='JSON');"
        f"CREATE STREAM shipped{suffix} AS SELECT o.id AS id, amount, carrier FROM orders{suffix} o "
        f"JOIN shipments{suffix} s WITHIN 1 HOURS GRACE PERIOD 10 MINUTES ON o.id = s.id;"),
        "streamsProperties": {"auto.offset.reset": "earliest", "max.task.idle.ms": 2000, **props}})
    assert status == 200, body
    events = order_events()
    want = {f"o-{i}" for i in range(ORDERS)
            if shipment_offset(i) is not None and abs(shipment_offset(i)) <= HOUR_MS}
    half = len(events) // 2
    produce_events(ctx.broker.bootstrap, events[:half], suffix)
    ctx.server.kill9()
    ctx.server.start()
    produce_events(ctx.broker.bootstrap, events[half:], suffix)
    c = Consumer({"bootstrap.servers": ctx.broker.bootstrap, "group.id": f"check-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([f"SHIPPED{suffix}"])
    got, records = set(), 0
    deadline = time.time() + 120
    # Reads until every expected order came, then a little longer for anything unexpected.
    quiet_until = None
    while time.time() < deadline and (quiet_until is None or time.time() < quiet_until):
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if m.error():
                continue
            v = json.loads(m.value())
            records += 1
            key = m.key().decode()
            assert v["CARRIER"] == f"c{int(key[2:]) % 7}", f"{key} joined with {v}"
            got.add(key)
        if quiet_until is None and want <= got:
            quiet_until = time.time() + 5
    c.close()
    missing, extra = sorted(want - got), sorted(got - want)
    late = query_statistics(ctx, f"SHIPPED{suffix}")["lateRecords"]
    assert not missing, f"{len(missing)} joined orders are missing, e.g. {missing[:5]} ({late} records late)"
    assert not extra, f"{len(extra)} orders joined that should not have, e.g. {extra[:5]}"
    return len(want), records - len(want), late


def test_stream_stream_join_restart(ctx):
    """At-least-once: duplicates are counted and reported."""
    joined, duplicates, late = stream_stream_join_restart(ctx, "", {})
    print(f"   {joined} of {ORDERS} orders joined with their shipment across a kill -9 "
          f"({duplicates} duplicates, {late} records late)")


def test_stream_stream_join_restart_exactly_once(ctx):
    """processing.guarantee=exactly_once_v2: the same, and nothing is written twice."""
    joined, duplicates, late = stream_stream_join_restart(ctx, "_EOS", {"processing.guarantee": "exactly_once_v2"})
    assert duplicates == 0, f"{duplicates} joined orders were written twice"
    print(f"   {joined} of {ORDERS} orders joined with their shipment across a kill -9, none twice "
          f"({late} records late)")


def query_statistics(ctx, sink):
    """The statistics of the query writing `sink`, from SHOW QUERIES EXTENDED."""
    status, body = post(ctx.server.url + "/ksql", {"ksql": "SHOW QUERIES EXTENDED;"})
    assert status == 200, body
    for q in json.loads(body)[0]["queryDescriptions"]:
        if sink in q["sinks"]:
            return q["statistics"]
    raise AssertionError(f"no query writes {sink}: {body}")


def murmur2_producer(bootstrap):
    """A producer that places keys as Java clients (and Eddy's repartitioning) do: Kafka's murmur2."""
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"})


def read_all(bootstrap, topic, until, timeout=120):
    """(key, value) of the records of `topic`, read until `until` distinct keys came (then 2 s more)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline, quiet_until = [], time.time() + timeout, None
    while time.time() < deadline and (quiet_until is None or time.time() < quiet_until):
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if not m.error():
                got.append((m.key().decode(), json.loads(m.value())))
        if quiet_until is None and len({k for k, _ in got}) >= until:
            quiet_until = time.time() + 2
    c.close()
    return got


def internal_topics(bootstrap, query, suffix):
    """The topics of the query writing `query` (its id holds the sink's name) that end in `suffix`."""
    return [t for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
            if any(f"_query_{kind}_{query}_" in t for kind in ("CSAS", "CTAS")) and t.endswith(suffix)]


def test_join_repartition(ctx):
    """Sides not keyed by their join expression go through a repartition topic (ksqlDB's names), placed
    where Kafka's partitioner puts the join value as the other side's key: payments keyed by their own
    id meet their orders in a stream-stream join over 4 partitions (each partition's shard joins only
    what is in that partition), and readings keyed by their own id meet their car's row."""
    orders, cars, readings = 4_000, 50, 5_000
    create_topics(ctx.broker.bootstrap, ["porders", "payments", "pcars", "preadings"])
    keyed = murmur2_producer(ctx.broker.bootstrap)
    for i in range(orders):
        keyed.produce("porders", json.dumps({"AMOUNT": i}).encode(), key=f"o-{i}".encode(), timestamp=T0 + i * 1000)
    for k in range(cars):
        keyed.produce("pcars", json.dumps({"MODEL": f"m-{k}"}).encode(), key=f"car-{k}".encode(), timestamp=T0 - 1)
    assert keyed.flush(60) == 0
    other = Producer({"bootstrap.servers": ctx.broker.bootstrap, "linger.ms": 20})
    for i in range(orders):
        if i % 5:
            other.produce("payments", json.dumps({"ORDER_ID": f"o-{i}", "PAID": i}).encode(),
                          key=f"p-{i}".encode(), timestamp=T0 + i * 1000 + 500)
    for j in range(readings):
        other.produce("preadings", json.dumps({"CAR": f"car-{j % 60}", "SEQ": j}).encode(),
                      key=f"r-{j}".encode(), timestamp=T0 + j)
    assert other.flush(60) == 0
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        "CREATE STREAM porders (id STRING KEY, amount INT) WITH (kafka_topic='porders', value_format='JSON');"
        "CREATE STREAM payments (pid STRING KEY, order_id STRING, paid INT) "
        "WITH (kafka_topic='payments', value_format='JSON');"
        "CREATE STREAM paid AS SELECT o.id AS id, amount, paid FROM porders o "
        "JOIN payments p WITHIN 1 MINUTE ON o.id = p.order_id;"
        "CREATE TABLE pcars (id STRING PRIMARY KEY, model STRING) WITH (kafka_topic='pcars', value_format='JSON');"
        "CREATE STREAM preadings (rid STRING KEY, car STRING, seq INT) "
        "WITH (kafka_topic='preadings', value_format='JSON');"
        "CREATE STREAM penriched AS SELECT r.car AS car, seq, model FROM preadings r "
        "LEFT JOIN pcars c ON r.car = c.id;"),
        "streamsProperties": {"auto.offset.reset": "earliest", "max.task.idle.ms": 1000}})
    assert status == 200, body

    paid = read_all(ctx.broker.bootstrap, "PAID", orders - orders // 5)
    want = {f"o-{i}": i for i in range(orders) if i % 5}
    got = {k: v["PAID"] for k, v in paid}
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} orders did not meet their payment, e.g. {missing[:5]}"
    assert got == want, [(k, v, want.get(k)) for k, v in got.items() if want.get(k) != v][:5]

    enriched = read_all(ctx.broker.bootstrap, "PENRICHED", 60)
    by_seq = {v["SEQ"]: (k, v["MODEL"]) for k, v in enriched}
    missing = [j for j in range(readings) if j not in by_seq]
    assert not missing, f"{len(missing)} readings are missing, e.g. {missing[:5]}"
    wrong = [(j, by_seq[j]) for j in range(readings)
             if by_seq[j] != (f"car-{j % 60}", f"m-{j % 60}" if j % 60 < cars else None)]
    assert not wrong, f"{len(wrong)} readings got the wrong car or model, e.g. {wrong[:5]}"

    right = internal_topics(ctx.broker.bootstrap, "PAID", "-Join-right-repartition")
    stream = internal_topics(ctx.broker.bootstrap, "PENRICHED", "-Join-repartition")
    assert right and stream, "no join repartition topics"
    print(f"   {len(want)} orders met their payment through {right[0]}; {readings} readings their car "
          f"through {stream[0]}")


def across_kill9(ctx, produce, total, ksql, sink, ready):
    """Produces the first half of `total` events (`produce(range)`), runs `ksql` reading from the
    beginning, waits until `ready` keys came out of `sink`, kills the server with SIGKILL, starts it
    again and produces the second half."""
    produce(range(total // 2))
    status, body = post(ctx.server.url + "/ksql", {
        "ksql": ksql, "streamsProperties": {"auto.offset.reset": "earliest", "max.task.idle.ms": 1000}})
    assert status == 200, body
    read_all(ctx.broker.bootstrap, sink, ready, timeout=60)
    ctx.server.kill9()
    ctx.server.start()
    produce(range(total // 2, total))


def test_join_repartition_restart(ctx):
    """A stream-stream join whose payments, keyed by their own ids, go through a repartition topic,
    killed with SIGKILL half-way: after the restart the repartitioning and the join go on from where
    they had got, and every order meets its payment (duplicates counted)."""
    orders = 4_000
    bootstrap = ctx.broker.bootstrap
    create_topics(bootstrap, ["korders", "kpayments"])
    keyed = murmur2_producer(bootstrap)
    other = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})

    def orders_and_payments(numbers):
        for i in numbers:
            t = T0 + i * 1000
            keyed.produce("korders", json.dumps({"AMOUNT": i}).encode(), key=f"o-{i}".encode(), timestamp=t)
            if i % 5:
                other.produce("kpayments", json.dumps({"ORDER_ID": f"o-{i}", "PAID": i}).encode(),
                              key=f"p-{i}".encode(), timestamp=t + 500)
        assert keyed.flush(60) == 0 and other.flush(60) == 0

    across_kill9(ctx, orders_and_payments, orders, (
        "CREATE STREAM korders (id STRING KEY, amount INT) WITH (kafka_topic='korders', value_format='JSON');"
        "CREATE STREAM kpayments (pid STRING KEY, order_id STRING, paid INT) "
        "WITH (kafka_topic='kpayments', value_format='JSON');"
        "CREATE STREAM kpaid AS SELECT o.id AS id, amount, paid FROM korders o "
        "JOIN kpayments p WITHIN 1 MINUTE ON o.id = p.order_id;"), "KPAID", orders // 4)
    want = {f"o-{i}": i for i in range(orders) if i % 5}
    rows = read_all(bootstrap, "KPAID", len(want))
    got = {k: v["PAID"] for k, v in rows}
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} orders did not meet their payment, e.g. {missing[:5]}"
    assert got == want, [(k, v, want.get(k)) for k, v in got.items() if want.get(k) != v][:5]
    repartition = internal_topics(bootstrap, "KPAID", "-Join-right-repartition")
    assert repartition, "the payments did not go through a repartition topic"
    print(f"   {len(want)} orders met their payment through {repartition[0]} across a kill -9 "
          f"({len(rows) - len(want)} duplicates)")


def test_multi_way_join(ctx):
    """Three streams in one query: orders meet their payments (keyed alike) and then their shipments,
    keyed by their own ids, which go through a repartition topic to their order's partition. Every
    order with a payment and a shipment gets exactly its row; terminating the query deletes its
    internal topics."""
    orders = 2_000
    bootstrap = ctx.broker.bootstrap
    create_topics(bootstrap, ["morders", "mpayments", "mshipments"])
    events = []
    for i in range(orders):
        t = T0 + i * 1000
        events.append((t, "morders", f"o-{i}", {"ITEM": f"item-{i}"}))
        if i % 4 != 1:
            events.append((t + 300, "mpayments", f"o-{i}", {"AMOUNT": i}))
        if i % 4 != 2:
            events.append((t + 600, "mshipments", f"s-{i}", {"ORDER_ID": f"o-{i}", "WAREHOUSE": f"w-{i % 7}"}))
    events.sort(key=lambda e: e[0])
    keyed = murmur2_producer(bootstrap)
    for t, topic, key, value in events:
        keyed.produce(topic, json.dumps(value).encode(), key=key.encode(), timestamp=t)
    assert keyed.flush(60) == 0
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        "CREATE STREAM morders (id STRING KEY, item STRING) WITH (kafka_topic='morders', value_format='JSON');"
        "CREATE STREAM mpayments (id STRING KEY, amount INT) WITH (kafka_topic='mpayments', value_format='JSON');"
        "CREATE STREAM mshipments (sid STRING KEY, order_id STRING, warehouse STRING) "
        "WITH (kafka_topic='mshipments', value_format='JSON');"
        "CREATE STREAM mshipped AS SELECT o.id AS id, item, amount, warehouse FROM morders o "
        "JOIN mpayments p WITHIN 1 MINUTE ON o.id = p.id "
        "JOIN mshipments s WITHIN 1 MINUTE ON o.id = s.order_id;"),
        "streamsProperties": {"auto.offset.reset": "earliest", "max.task.idle.ms": 1000}})
    assert status == 200, body

    want = {f"o-{i}": {"ITEM": f"item-{i}", "AMOUNT": i, "WAREHOUSE": f"w-{i % 7}"}
            for i in range(orders) if i % 4 not in (1, 2)}
    rows = read_all(bootstrap, "MSHIPPED", len(want))
    got = {k: v for k, v in rows}
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} orders are missing, e.g. {missing[:5]}"
    wrong = [(k, v, want.get(k)) for k, v in got.items() if want.get(k) != v]
    assert not wrong, f"{len(wrong)} rows are wrong, e.g. {wrong[:5]}"
    repartition = internal_topics(bootstrap, "MSHIPPED", "-Join-right-1-repartition")
    assert repartition, "no repartition topic for the second join's right side"

    terminate(ctx, "MSHIPPED")
    print(f"   {len(want)} orders met their payment and shipment ({len(rows) - len(want)} duplicates) "
          f"through {repartition[0]}; its internal topics were deleted with the query")


def terminate(ctx, sink):
    """Terminates the query writing `sink` and checks that its internal topics are deleted; returns
    how many it had."""
    bootstrap = ctx.broker.bootstrap
    had = internal_topics(bootstrap, sink, "")
    status, body = post(ctx.server.url + "/ksql", {"ksql": "SHOW QUERIES;"})
    assert status == 200, body
    query = next(q["id"] for q in json.loads(body)[0]["queries"] if sink in q["sinks"])
    status, body = post(ctx.server.url + "/ksql", {"ksql": f"TERMINATE {query};"})
    assert status == 200, body
    deadline = time.time() + 30
    while internal_topics(bootstrap, sink, "") and time.time() < deadline:
        time.sleep(0.5)
    left = internal_topics(bootstrap, sink, "")
    assert not left, f"internal topics left after TERMINATE: {left}"
    return len(had)


def test_stream_stream_then_table_restart(ctx):
    """A stream-stream join enriched with a table in the same query, killed with SIGKILL half-way: the
    restarted query takes its stream buffers back from its changelog and its table back from the
    table's topic, so the orders after the restart still meet their status row."""
    orders = 2_000
    bootstrap = ctx.broker.bootstrap
    create_topics(bootstrap, ["xorders", "xpayments", "xstatus"])
    keyed = murmur2_producer(bootstrap)
    for i in range(orders):
        keyed.produce("xstatus", json.dumps({"STATUS": f"s-{i % 3}"}).encode(), key=f"o-{i}".encode(),
                      timestamp=T0 - 1)

    def orders_and_payments(numbers):
        for i in numbers:
            t = T0 + i * 1000
            keyed.produce("xorders", json.dumps({"ITEM": f"item-{i}"}).encode(), key=f"o-{i}".encode(), timestamp=t)
            keyed.produce("xpayments", json.dumps({"AMOUNT": i}).encode(), key=f"o-{i}".encode(), timestamp=t + 300)
        assert keyed.flush(60) == 0

    across_kill9(ctx, orders_and_payments, orders, (
        "CREATE STREAM xorders (id STRING KEY, item STRING) WITH (kafka_topic='xorders', value_format='JSON');"
        "CREATE STREAM xpayments (id STRING KEY, amount INT) WITH (kafka_topic='xpayments', value_format='JSON');"
        "CREATE TABLE xstatus (id STRING PRIMARY KEY, status STRING) WITH (kafka_topic='xstatus', value_format='JSON');"
        "CREATE STREAM xpaid AS SELECT o.id AS id, item, amount, status FROM xorders o "
        "JOIN xpayments p WITHIN 1 MINUTE ON o.id = p.id "
        "LEFT JOIN xstatus s ON o.id = s.id;"), "XPAID", orders // 2 - 10)
    want = {f"o-{i}": {"ITEM": f"item-{i}", "AMOUNT": i, "STATUS": f"s-{i % 3}"} for i in range(orders)}
    rows = read_all(bootstrap, "XPAID", len(want))
    got = {}
    for k, v in rows:
        got.setdefault(k, v)
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} orders are missing, e.g. {missing[:5]}"
    wrong = [(k, v, want[k]) for k, v in rows if want.get(k) != v]
    assert not wrong, f"{len(wrong)} rows are wrong, e.g. {wrong[:5]}"
    print(f"   {orders} orders met their payment and status across a kill -9 ({len(rows) - orders} duplicates)")


def per_car(counts):
    """Counts per model (`m<car>-<version>`) summed per car, over its models."""
    cars = {}
    for model, c in counts.items():
        if c:
            n = cars.setdefault(model.rsplit("-", 1)[0], {"N": 0, "SPEEDS": 0})
            n["N"] += c["N"]
            n["SPEEDS"] += c["SPEEDS"]
    return cars


def final_rows(bootstrap, topic, want, timeout=180, view=lambda rows: rows):
    """The latest value of each key of `topic`, read until it equals `want` as `view` shows them (then
    3 s more, for anything written after) or until `timeout`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline, quiet_until = {}, time.time() + timeout, None
    while time.time() < deadline and (quiet_until is None or time.time() < quiet_until):
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if not m.error():
                got[m.key().decode()] = json.loads(m.value()) if m.value() is not None else None
        if quiet_until is None and view(got) == view(want):
            quiet_until = time.time() + 3
    c.close()
    return got


def tally(pairs, amounts):
    """Per group, of (group, amount) pairs: {"N": how many, `amounts`: their sum}, as COUNT(*) and SUM
    give them."""
    out = {}
    for group, amount in pairs:
        n = out.setdefault(group, {"N": 0, amounts: 0})
        n["N"] += 1
        n[amounts] += amount
    return out


def check_counts(got, want, what):
    wrong = sorted((k, got.get(k), v) for k, v in want.items() if got.get(k) != v)
    extra = sorted(k for k in got if k not in want)
    assert not wrong and not extra, (
        f"{len(wrong)} {what} have the wrong count, e.g. (key, got, want) {wrong[:3]}; "
        f"{len(extra)} that should not be there, e.g. {extra[:3]}")


def test_aggregation_over_joins_restart(ctx):
    """Aggregations over a stream-table and a stream-stream join, killed with SIGKILL while input streams
    in: each runs as its joins writing to an internal topic and an aggregation reading it, and the
    counts after the restart are exact: what the joins wrote again after the kill is not counted
    twice."""
    bootstrap = ctx.broker.bootstrap
    create_topics(bootstrap, ["jcars4", "jreadings4", "orders_agg", "shipments_agg"])
    events = order_events()
    half = len(events) // 2
    produce_cars_and_readings(bootstrap, "4", range(READINGS // 2))
    produce_events(bootstrap, events[:half], "_agg")
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        "CREATE TABLE jcars4 (id STRING PRIMARY KEY, model STRING) "
        "WITH (kafka_topic='jcars4', key_format='KAFKA', value_format='JSON');"
        "CREATE STREAM jreadings4 (car STRING KEY, seq INT, speed INT) "
        "WITH (kafka_topic='jreadings4', key_format='KAFKA', value_format='JSON');"
        "CREATE TABLE per_model AS SELECT model, COUNT(*) AS n, SUM(speed) AS speeds "
        "FROM jreadings4 r JOIN jcars4 c ON r.car = c.id GROUP BY model;"
        "CREATE STREAM orders_agg (id STRING KEY, amount INT) "
        "WITH (kafka_topic='orders_agg', key_format='KAFKA', value_format='JSON');"
        "CREATE STREAM shipments_agg (id STRING KEY, carrier STRING) "
        "WITH (kafka_topic='shipments_agg', key_format='KAFKA', value_format='JSON');"
        "CREATE TABLE per_carrier AS SELECT carrier, COUNT(*) AS n, SUM(amount) AS amounts "
        "FROM orders_agg o JOIN shipments_agg s WITHIN 1 HOURS GRACE PERIOD 10 MINUTES ON o.id = s.id "
        "GROUP BY carrier;"),
        "streamsProperties": {"auto.offset.reset": "earliest", "max.task.idle.ms": 2000}})
    assert status == 200, body
    read_all(bootstrap, "PER_MODEL", 100, timeout=60)
    # Killed while the second halves stream in: the joins have written rows whose input they had
    # not yet committed, and write them again after the restart.
    producers = [threading.Thread(target=produce_cars_and_readings,
                                  args=(bootstrap, "4", range(READINGS // 2, READINGS))),
                 threading.Thread(target=produce_events, args=(bootstrap, events[half:], "_agg"))]
    for t in producers:
        t.start()
    time.sleep(2)
    ctx.server.kill9()
    ctx.server.start()
    for t in producers:
        t.join()

    per_model = tally(((m, j % 130) for j, m in expected_models().items() if m is not None), "SPEEDS")
    got = final_rows(bootstrap, "PER_MODEL", per_model, view=per_car)
    # Cars and readings stream in while the query runs: a model change can reach the join after a
    # reading just past it (as in Kafka Streams, time order holds for what is in the topics), which
    # moves that reading between two models of its car. What must be exact is each car's count over
    # its models: no reading counted twice or lost.
    check_counts(per_car(got), per_car(per_model), "cars (over their models)")
    # The aggregation's state answers pull queries, as any table's (car 1 never changes model).
    model = "m1-0"
    rows, _ = pull(ctx, f"SELECT * FROM per_model WHERE model = '{model}';")
    assert rows == [[model, per_model[model]["N"], per_model[model]["SPEEDS"]]], rows
    per_carrier = tally(((f"c{i % 7}", i % 500) for i in range(ORDERS)
                         if shipment_offset(i) is not None and abs(shipment_offset(i)) <= HOUR_MS), "AMOUNTS")
    check_counts(final_rows(bootstrap, "PER_CARRIER", per_carrier), per_carrier, "carriers")
    repartition = internal_topics(bootstrap, "PER_MODEL", "-Aggregate-GroupBy-repartition")
    assert repartition, "the joined rows did not go through an internal topic"
    statistics = query_statistics(ctx, "PER_MODEL")
    print(f"   {READINGS} readings counted per model ({len(per_model)} models; each car's count over its "
          f"models exact) and {sum(n['N'] for n in per_carrier.values())} shipped orders per carrier, exactly, "
          f"across a kill -9 "
          f"(through {repartition[0]}; {statistics})")


def test_join_of_joined_rows_on_another_value(ctx):
    """Orders keyed by their own ids meet their customer (the orders repartitioned by customer) and then
    the customer's region: the rows of the first join are repartitioned by the region through an
    internal topic, which splits the query into two tasks; counting orders per region over the same
    joins splits it into three. Killed with SIGKILL while orders stream in: every order gets its region,
    and the counts are exact (rows the first task writes again are left out before the second joins
    them)."""
    orders, customers, regions = 24_000, 1_000, 40
    bootstrap = ctx.broker.bootstrap
    create_topics(bootstrap, ["worders", "wcustomers", "wregions"])
    keyed = murmur2_producer(bootstrap)
    for k in range(regions):
        keyed.produce("wregions", json.dumps({"NAME": f"region {k}"}).encode(), key=f"r-{k}".encode(),
                      timestamp=T0 - 2)
    for k in range(customers):
        keyed.produce("wcustomers", json.dumps({"REGION": f"r-{(k * 7) % regions}"}).encode(),
                      key=f"k-{k}".encode(), timestamp=T0 - 1)
    assert keyed.flush(60) == 0
    # Orders placed by their keys as Java clients place them, at a capped rate.
    events = [(T0 + i, "worders", f"o-{i}", {"CUSTOMER": f"k-{(i * 13) % customers}", "AMOUNT": i % 100})
              for i in range(orders)]
    half = orders // 4
    produce_events(bootstrap, events[:half])
    joins = ("FROM worders o JOIN wcustomers c ON o.customer = c.id "
             "JOIN wregions r ON c.region = r.id")
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        "CREATE STREAM worders (id STRING KEY, customer STRING, amount INT) "
        "WITH (kafka_topic='worders', key_format='KAFKA', value_format='JSON');"
        "CREATE TABLE wcustomers (id STRING PRIMARY KEY, region STRING) "
        "WITH (kafka_topic='wcustomers', key_format='KAFKA', value_format='JSON');"
        "CREATE TABLE wregions (id STRING PRIMARY KEY, name STRING) "
        "WITH (kafka_topic='wregions', key_format='KAFKA', value_format='JSON');"
        f"CREATE STREAM wenriched AS SELECT c.region AS region, o.id AS oid, amount, name {joins};"
        f"CREATE TABLE wper_region AS SELECT name, COUNT(*) AS n, SUM(amount) AS amounts {joins} GROUP BY name;"),
        "streamsProperties": {"auto.offset.reset": "earliest", "max.task.idle.ms": 1000}})
    assert status == 200, body
    read_all(bootstrap, "WENRICHED", regions, timeout=60)
    producer = threading.Thread(target=produce_events, args=(bootstrap, events[half:]))
    producer.start()
    time.sleep(2)
    ctx.server.kill9()
    ctx.server.start()
    producer.join()
    region_of = lambda i: (((i * 13) % customers) * 7) % regions  # noqa: E731
    want = {f"o-{i}": (f"r-{region_of(i)}", f"region {region_of(i)}") for i in range(orders)}
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["WENRICHED"])
    got, records, deadline = {}, 0, time.time() + 120
    while len(got) < orders and time.time() < deadline:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if not m.error():
                v = json.loads(m.value())
                records += 1
                got.setdefault(v["OID"], (m.key().decode(), v["NAME"]))
    c.close()
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} orders are missing, e.g. {missing[:5]}"
    wrong = [(o, got[o], want[o]) for o in want if got[o] != want[o]]
    assert not wrong, f"{len(wrong)} orders got the wrong region, e.g. {wrong[:5]}"
    per_region = tally(((f"region {region_of(i)}", i % 100) for i in range(orders)), "AMOUNTS")
    check_counts(final_rows(bootstrap, "WPER_REGION", per_region), per_region, "regions")
    split = internal_topics(bootstrap, "WENRICHED", "-Join-left-1-repartition")
    assert split, "the first join's rows did not go through an internal topic"
    internal = terminate(ctx, "WPER_REGION")
    print(f"   {orders} orders met their customer and region through {split[0]}, and were counted per "
          f"region in a query split in three, across a kill -9 ({records - orders} duplicates; its "
          f"{internal} internal topics deleted with it)")


def pull(ctx, sql):
    """A pull query's rows and how long it took, in milliseconds."""
    started = time.perf_counter()
    status, body = post(ctx.server.url + "/query-stream", {"sql": sql})
    took = (time.perf_counter() - started) * 1000
    assert status == 200, body
    return [json.loads(line) for line in body.splitlines()[1:]], took


def test_table_store_pull(ctx):
    """Pull queries by key on a CREATE TABLE source are answered from the table's store, kept current
    from its topic (a row inserted just before is seen), with the latency printed next to a scan of the
    same topic (a pull query on a stream over it)."""
    rows, updates = 20_000, 100_000
    create_topics(ctx.broker.bootstrap, ["fleet"])
    p = Producer({"bootstrap.servers": ctx.broker.bootstrap, "linger.ms": 20})
    for j in range(updates):
        p.produce("fleet", json.dumps({"MODEL": f"m{j}"}).encode(), key=f"car-{j % rows}".encode())
        if j % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        "CREATE TABLE fleet (id STRING PRIMARY KEY, model STRING) "
        "WITH (kafka_topic='fleet', key_format='KAFKA', value_format='JSON');"
        "CREATE STREAM fleet_log (id STRING KEY, model STRING) "
        "WITH (kafka_topic='fleet', key_format='KAFKA', value_format='JSON');")})
    assert status == 200, body
    latest = {f"car-{j % rows}": f"m{j}" for j in range(updates)}
    got, first = pull(ctx, "SELECT * FROM fleet WHERE id = 'car-7';")
    assert got == [["car-7", latest["car-7"]]], got
    lookups = []
    for i in range(200):
        car = f"car-{(i * 7919) % rows}"
        got, took = pull(ctx, f"SELECT * FROM fleet WHERE id = '{car}';")
        assert got == [[car, latest[car]]], (car, got)
        lookups.append(took)
    got, _ = pull(ctx, "SELECT * FROM fleet WHERE id IN ('car-1', 'car-2', 'nobody');")
    assert sorted(got) == [["car-1", latest["car-1"]], ["car-2", latest["car-2"]]], got
    all_rows, whole = pull(ctx, "SELECT * FROM fleet;")
    assert len(all_rows) == rows, len(all_rows)
    # A row written just before the query is in the store by the time it answers.
    status, body = post(ctx.server.url + "/ksql", {"ksql": "INSERT INTO fleet (id, model) VALUES ('car-7', 'fresh');"})
    assert status == 200, body
    got, _ = pull(ctx, "SELECT * FROM fleet WHERE id = 'car-7';")
    assert got == [["car-7", "fresh"]], got
    scans = []
    for i in range(5):
        got, took = pull(ctx, "SELECT * FROM fleet_log WHERE id = 'car-9';")
        assert got and got[-1] == ["car-9", latest["car-9"]], got
        scans.append(took)
    lookups.sort()
    scans.sort()
    print(f"   pull by key from the store of {rows} rows ({updates} records): p50 {lookups[100]:.1f} ms, "
          f"p99 {lookups[198]:.1f} ms (the first query, which fills the store: {first:.0f} ms; all rows: "
          f"{whole:.0f} ms); a scan of the same topic: p50 {scans[2]:.0f} ms")


def test_partition_counts_must_match(ctx):
    """A join of sides with different partition counts is refused with ksqlDB's message, and nothing is
    left running."""
    admin = AdminClient({"bootstrap.servers": ctx.broker.bootstrap})
    for f in admin.create_topics([NewTopic("pleft", 2, 1), NewTopic("pright", 4, 1)]).values():
        f.result(30)
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        "CREATE STREAM pleft (id STRING KEY, v INT) WITH (kafka_topic='pleft', value_format='JSON');"
        "CREATE TABLE pright (id STRING PRIMARY KEY, w INT) WITH (kafka_topic='pright', value_format='JSON');")})
    assert status == 200, body
    status, body = post(ctx.server.url + "/ksql", {"ksql": (
        "CREATE STREAM pjoined AS SELECT l.id AS id, v, w FROM pleft l JOIN pright r ON l.id = r.id;")})
    assert status == 400 and "number of partitions don't match" in body and "`PLEFT` partitions = 2" in body, body
    status, body = post(ctx.server.url + "/ksql", {"ksql": "SHOW QUERIES;"})
    assert status == 200 and "PJOINED" not in body, body


def main():
    run([test_stream_table_join, test_stream_table_join_restart, test_stream_table_join_restart_exactly_once,
         test_stream_stream_join_restart,
         test_stream_stream_join_restart_exactly_once,
         test_join_repartition, test_join_repartition_restart, test_multi_way_join, test_stream_stream_then_table_restart,
         test_aggregation_over_joins_restart, test_join_of_joined_rows_on_another_value, test_table_store_pull, test_partition_counts_must_match],
        "joins")


if __name__ == "__main__":
    main()
