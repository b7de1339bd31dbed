"""The MQTT source connector through a real MQTT broker (Debian's mosquitto, started here) and the real
Kafka-protocol broker: cars publish to cars/<car_id>/telemetry with QoS 1, Eddy writes the messages
into a Kafka topic keyed by car id, a CSAS reads them on; the server is killed with SIGKILL half-way
and restarted, and no message the MQTT broker accepted is missing. With two servers, one runs the
connector and the other takes it over when the first is killed.

Run by scripts/test:  python tests/e2e/test_mqtt.py --server-bin target/release/eddy-server
(--cars 100 --messages 1000: the issue's 100 cars x 1,000 messages).
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, TopicPartition

from test_e2e import Ctx, Server, free_port, post, run_with_broker

PARTITIONS = 4


class Mosquitto:
    """A mosquitto on a free port of loopback, holding any number of queued QoS 1 messages for a
    persistent session (its default keeps 1,000) and delivering up to 1,000 at a time."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="eddy-mosquitto-")
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                    "max_inflight_messages 1000\npersistence false\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", conf], stdout=open(os.path.join(self.dir, "log"), "w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            try:
                probe.connect("127.0.0.1", self.port)
                probe.disconnect()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("mosquitto did not start: see " + self.dir)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def ksql(server, sql, **props):
    status, body = post(server.url + "/ksql", {"ksql": sql, "streamsProperties": props})
    assert status == 200, f"{sql}\n{body}"
    return json.loads(body)


def topic_size(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"size-{time.time()}"})
    total = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS))
    c.close()
    return total


def read_all(bootstrap, topic, want, timeout=180):
    """(key, value) of every record, once `want` distinct values arrived or nothing came for 15 s."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    rows, distinct, idle, deadline = [], set(), 0, time.time() + timeout
    while time.time() < deadline and idle < 15 and len(distinct) < want:
        fresh = [m for m in c.consume(num_messages=10000, timeout=1.0) if not m.error()]
        idle = 0 if fresh else idle + 1
        for m in fresh:
            rows.append((m.key(), m.value()))
            distinct.add(m.value())
    c.close()
    return rows


def publish(port, cars, messages, accepted):
    """Every car's messages, round robin, QoS 1, at most 500 awaiting the broker's acknowledgement;
    `accepted` counts those it acknowledged."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cars", clean_session=True)
    client.max_inflight_messages_set(500)
    client.connect("127.0.0.1", port)
    client.loop_start()
    pending = []
    for seq in range(messages):
        for car in range(cars):
            payload = json.dumps({"car": f"car-{car}", "seq": seq, "speed": 50.0 + (seq % 70)})
            while True:
                info = client.publish(f"cars/car-{car}/telemetry", payload, qos=1)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    break
                time.sleep(0.01)
            pending.append(info)
        while len(pending) > 500:
            pending.pop(0).wait_for_publish(60)
            accepted[0] += 1
    for info in pending:
        info.wait_for_publish(60)
        accepted[0] += 1
    client.loop_stop()
    client.disconnect()


def test_mqtt_source_across_a_kill(ctx):
    cars, messages = ctx.cars, ctx.messages
    total = cars * messages
    mosquitto = Mosquitto()
    data = tempfile.mkdtemp(prefix="eddy-mqtt-")
    server = Server(ctx.server_bin, ctx.broker.bootstrap, data, f"mqtt{os.getpid()}")
    try:
        ksql(server, "CREATE STREAM telemetry (car_id STRING KEY, car STRING, seq BIGINT, speed DOUBLE) WITH "
                     f"(kafka_topic='mqtt_telemetry', value_format='JSON', partitions={PARTITIONS});")
        ksql(server, "CREATE SOURCE CONNECTOR cars WITH (\"connector.class\" = 'MqttSource', "
                     f"\"mqtt.server.uri\" = 'tcp://127.0.0.1:{mosquitto.port}', "
                     "\"mqtt.topics\" = 'cars/+/telemetry', \"kafka.topic\" = 'mqtt_telemetry', "
                     "\"key.topic.level\" = '1');")
        ksql(server, "CREATE STREAM car_speeds AS SELECT car_id, seq, speed FROM telemetry;",
             **{"auto.offset.reset": "earliest"})
        deadline = time.time() + 30
        while ksql(server, "DESCRIBE CONNECTOR cars;")[0]["status"]["connector"]["state"] != "RUNNING":
            assert time.time() < deadline, "the connector did not connect"
            time.sleep(0.2)
        accepted = [0]
        publisher = threading.Thread(target=publish, args=(mosquitto.port, cars, messages, accepted))
        publisher.start()
        deadline = time.time() + 120
        while topic_size(ctx.broker.bootstrap, "mqtt_telemetry") < total // 3:
            assert time.time() < deadline, "the connector wrote too little"
            time.sleep(0.05)
        server.kill9()
        killed_at = accepted[0]
        time.sleep(2)
        server.start()
        publisher.join()
        assert accepted[0] == total, f"the MQTT broker accepted {accepted[0]} of {total}"
        rows = read_all(ctx.broker.bootstrap, "mqtt_telemetry", total)
        seen = {}
        for key, value in rows:
            v = json.loads(value)
            assert key.decode() == v["car"], (key, v)
            seen[(v["car"], v["seq"])] = seen.get((v["car"], v["seq"]), 0) + 1
        missing = total - len(seen)
        duplicates = len(rows) - len(seen)
        assert missing == 0, f"{missing} of {total} messages are not in the Kafka topic"
        downstream = read_all(ctx.broker.bootstrap, "CAR_SPEEDS", total)
        carried = {(k.decode(), json.loads(v)["SEQ"]) for k, v in downstream}
        assert len(carried) == total, f"the CSAS carried {len(carried)} of {total}"
        states = ksql(server, "SHOW CONNECTORS;")[0]["connectors"]
        assert [(c["name"], c["state"]) for c in states] == [("CARS", "RUNNING")], states
        print(f"  {total} messages ({cars} cars x {messages}) over MQTT QoS 1, server killed after the broker "
              f"accepted {killed_at}: all {total} in Kafka, {duplicates} written twice; the CSAS saw all")
    finally:
        server.stop()
        mosquitto.stop()


def test_one_server_runs_the_connector_and_another_takes_over(ctx):
    """Two servers of one service id: one holds the connector's lease and runs it, the other waits;
    when the first is killed, the second takes the session over and nothing is missing."""
    cars, messages = 20, 500
    total = cars * messages
    mosquitto = Mosquitto()
    service = f"mqtt2{os.getpid()}"
    first = Server(ctx.server_bin, ctx.broker.bootstrap, tempfile.mkdtemp(prefix="eddy-mqtt-a-"), service)
    second = None
    try:
        ksql(first, "CREATE STREAM readings (car_id STRING KEY, car STRING, seq BIGINT) WITH "
                    f"(kafka_topic='mqtt_failover', value_format='JSON', partitions={PARTITIONS});")
        ksql(first, "CREATE SOURCE CONNECTOR cars WITH (\"connector.class\" = 'MqttSource', "
                    f"\"mqtt.server.uri\" = 'tcp://127.0.0.1:{mosquitto.port}', "
                    "\"mqtt.topics\" = 'cars/+/telemetry', \"kafka.topic\" = 'mqtt_failover', "
                    "\"key.topic.level\" = '1');")
        second = Server(ctx.server_bin, ctx.broker.bootstrap, tempfile.mkdtemp(prefix="eddy-mqtt-b-"), service)

        def states():
            return [ksql(s, "SHOW CONNECTORS;")[0]["connectors"][0]["state"] for s in (first, second)]
        deadline = time.time() + 30
        while sorted(states()) != ["RUNNING", "UNASSIGNED"]:
            assert time.time() < deadline, states()
            time.sleep(0.2)
        leader, follower = (first, second) if states()[0] == "RUNNING" else (second, first)
        accepted = [0]
        publisher = threading.Thread(target=publish, args=(mosquitto.port, cars, messages, accepted))
        publisher.start()
        while topic_size(ctx.broker.bootstrap, "mqtt_failover") < total // 3:
            time.sleep(0.05)
        leader.kill9()
        publisher.join()
        rows = read_all(ctx.broker.bootstrap, "mqtt_failover", total, timeout=120)
        distinct = {json.loads(v)["car"] + "/" + str(json.loads(v)["seq"]) for _, v in rows}
        assert len(distinct) == total, f"{total - len(distinct)} of {total} messages are missing"
        assert ksql(follower, "SHOW CONNECTORS;")[0]["connectors"][0]["state"] == "RUNNING"
        print(f"  {total} messages: the leader killed after {accepted[0]} were accepted, the other server "
              f"took the session over; all in Kafka, {len(rows) - total} written twice")
    finally:
        for s in (first, second):
            if s:
                s.stop()
        mosquitto.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server-bin", required=True)
    ap.add_argument("--cars", type=int, default=100)
    ap.add_argument("--messages", type=int, default=1000, help="per car")
    args = ap.parse_args()
    ctx = Ctx()
    ctx.server_bin = os.path.abspath(args.server_bin)
    ctx.cars, ctx.messages = args.cars, args.messages
    run_with_broker([test_mqtt_source_across_a_kill, test_one_server_runs_the_connector_and_another_takes_over],
                    ctx, None)


if __name__ == "__main__":
    main()
