"""The retraining loop (udfs/anomaly/train/retrain.py) through a running server and the real broker:
trained on a topic of pump readings, the first version becomes production; a CSAS scores through
'production'; the second run trains on the last hour of the topic, watches the new version in shadow
beside production, compares their alert rates from /metrics and promotes it — the running query
follows without a restart.

Run by scripts/test:  python tests/e2e/test_retrain.py --server-bin target/release/eddy-server
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Producer

from test_e2e import ROOT, Server, main_with_broker, post
from test_user_model import FEATURES, pumps

RETRAIN = os.path.join(ROOT, "udfs/anomaly/train/retrain.py")


def produce(bootstrap, rows, pace=None):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for n, (pump, seq, values, label, kind, episode) in enumerate(rows):
        p.produce("pump_readings", json.dumps({"seq": seq, **dict(zip(FEATURES, values)), "label": label})
                  .encode(), key=pump.encode())
        if pace and n % 500 == 0:
            p.flush(10)
            time.sleep(500 / pace)
    assert p.flush(60) == 0


def retrain(server, bootstrap, watch):
    done = subprocess.run([sys.executable, RETRAIN, "--server", server.url, "--kafka", bootstrap, "--topic",
                           "pump_readings", "--model", "pump", "--hours", "1", "--exclude", "seq,label",
                           "--watch", str(watch)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_retraining_promotes_a_version_watched_in_shadow(ctx):
    server = Server(ctx.server_bin, ctx.broker.bootstrap, tempfile.mkdtemp(prefix="eddy-retrain-"),
                    f"retrain{os.getpid()}", ["--plugin-dir", os.path.join(ROOT, "target/plugins/dir")])
    try:
        columns = ", ".join(f"{f} DOUBLE" for f in FEATURES)
        status, body = post(server.url + "/ksql", {"ksql": f"CREATE STREAM pump_readings (pump_id STRING KEY, "
                                                           f"seq INT, {columns}, label INT) WITH (kafka_topic="
                                                           "'pump_readings', value_format='JSON', partitions=2);"})
        assert status == 200, body
        produce(ctx.broker.bootstrap, pumps(10, 1000, seed=3, faults=False))
        first = retrain(server, ctx.broker.bootstrap, watch=0)
        assert "Registered version 1 of model 'pump'" in first and "production' of model 'pump' points at " \
               "version 1" in first, first
        status, body = post(server.url + "/ksql", {"ksql": "CREATE STREAM pump_scores AS SELECT pump_id, "
                                                           f"ANOMALY('pump@production', {', '.join(FEATURES)}) AS a "
                                                           "FROM pump_readings;"})
        assert status == 200, body
        # Readings keep coming while the second version is watched in shadow.
        feeder = threading.Thread(target=produce, args=(ctx.broker.bootstrap, pumps(10, 600, seed=4, faults=False),
                                                        1000))
        feeder.start()
        second = retrain(server, ctx.broker.bootstrap, watch=4)
        feeder.join()
        assert "Registered version 2 of model 'pump'" in second, second
        assert "version 2 (shadow)" in second and "moved from version 1 SHADOW 2 to 2" in second, second
        described = json.loads(post(server.url + "/ksql", {"ksql": "DESCRIBE MODEL pump;"})[1])[0]
        assert described["aliases"] == {"candidate": 2, "production": 2}, described["aliases"]
        assert [q["versions"] for q in described["queries"]] == ["2"], described["queries"]
        print("  " + " / ".join(line for line in second.splitlines() if line.startswith("in ")))
    finally:
        server.stop()


if __name__ == "__main__":
    main_with_broker([test_retraining_promotes_a_version_watched_in_shadow])
