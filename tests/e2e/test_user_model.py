"""Training on a user's own data: a simulator built differently from the bundled car generator (water
pumps: speed, flow, pressure, power, vibration and bearing temperature, physically linked, each pump
with its own baselines) writes normal operation to a CSV; udfs/anomaly/train/train_user.py trains a
model on its columns and registers it with a running server as a new version behind the alias
'production'; a CSAS scores held-out pumps with injected faults (cavitation, bearing wear, a leak)
through the real broker, and the alerts find the faults.

Run by scripts/test:  python tests/e2e/test_user_model.py --server-bin target/release/eddy-server
"""

import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from confluent_kafka import Producer

from test_e2e import ROOT, Server, main_with_broker, post
from test_mqtt import read_all

FEATURES = ["speed_rpm", "flow_lpm", "pressure_bar", "power_kw", "vibration_mm_s", "bearing_temp_c"]
FAULTS = ["cavitation", "bearing", "leak"]


def pumps(count, samples, seed, faults):
    """Rows (pump, seq, features, label, fault kind, episode) of `count` pumps; with `faults`, episodes of
    60 samples every 300, their kinds in turn."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(count):
        k_flow, k_pressure = rng.uniform(0.20, 0.26), rng.uniform(1.6, 2.2)
        vib_base, ambient = rng.uniform(1.5, 2.5), rng.uniform(15, 30)
        setpoint = rng.uniform(1200, 1700)
        for t in range(samples):
            speed = setpoint * (1 + 0.15 * np.sin(2 * np.pi * t / 400 + p)) + rng.normal(0, 8)
            flow = k_flow * speed + rng.normal(0, 3)
            pressure = k_pressure * (speed / 1000) ** 2 + rng.normal(0, 0.05)
            power = flow * pressure * 0.017 + rng.normal(0, 0.1)
            vibration = vib_base + 0.0004 * speed + rng.normal(0, 0.1)
            temp = ambient + 2.5 * power + rng.normal(0, 0.4)
            kind, episode = "", -1
            if faults and t % 300 >= 200 and t % 300 < 260:
                episode = p * 1000 + t // 300
                kind = FAULTS[(p + t // 300) % 3]
                if kind == "cavitation":
                    pressure *= 0.75
                    vibration *= 2.2
                elif kind == "bearing":
                    temp += 12
                    vibration *= 1.8
                else:
                    flow *= 0.8
                    pressure *= 0.88
            rows.append((f"pump-{p}", t, [speed, flow, pressure, power, vibration, temp], int(bool(kind)), kind,
                         episode))
    return rows


def test_a_model_trained_on_a_users_csv_finds_its_faults(ctx):
    folder = tempfile.mkdtemp(prefix="eddy-user-model-")
    normal = os.path.join(folder, "pumps.csv")
    with open(normal, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pump_id", "seq", *FEATURES, "site"])
        for pump, seq, values, *_ in pumps(20, 2000, seed=1, faults=False):
            w.writerow([pump, seq, *(f"{v:.4f}" for v in values), "north"])
    server = Server(ctx.server_bin, ctx.broker.bootstrap, folder, f"user{os.getpid()}",
                    ["--plugin-dir", os.path.join(ROOT, "target/plugins/dir")])
    try:
        trained = subprocess.run(
            [sys.executable, os.path.join(ROOT, "udfs/anomaly/train/train_user.py"), "--csv", normal,
             "--exclude", "seq", "--model", "pump", "--server", server.url, "--alias", "production"],
            capture_output=True, text=True, timeout=300)
        assert trained.returncode == 0, trained.stdout + trained.stderr
        assert "Registered version 1 of model 'pump'" in trained.stdout, trained.stdout
        assert "features (speed_rpm, flow_lpm, pressure_bar, power_kw, vibration_mm_s, bearing_temp_c)" \
            in trained.stdout, trained.stdout
        columns = ", ".join(f"{f} DOUBLE" for f in FEATURES)
        for sql in [f"CREATE STREAM pumps (pump_id STRING KEY, seq INT, {columns}, label INT, fault STRING, "
                    "episode INT) WITH (kafka_topic='pumps', value_format='JSON', partitions=2);",
                    "CREATE STREAM pump_alerts AS SELECT pump_id, seq, label, fault, episode, "
                    f"ANOMALY('pump@production', {', '.join(FEATURES)}) AS a FROM pumps;"]:
            status, body = post(server.url + "/ksql", {"ksql": sql, "streamsProperties":
                                                       {"auto.offset.reset": "earliest"}})
            assert status == 200, body
        held_out = pumps(10, 1500, seed=2, faults=True)
        p = Producer({"bootstrap.servers": ctx.broker.bootstrap, "linger.ms": 5})
        for pump, seq, values, label, kind, episode in held_out:
            p.produce("pumps", json.dumps({"seq": seq, **dict(zip(FEATURES, values)), "label": label,
                                           "fault": kind, "episode": episode}).encode(), key=pump.encode())
        assert p.flush(60) == 0
        rows = [json.loads(v) for _, v in read_all(ctx.broker.bootstrap, "PUMP_ALERTS", len(held_out))]
        assert len(rows) == len(held_out), len(rows)
        normal_rows = [r for r in rows if r["LABEL"] == 0]
        false_rate = sum(r["A"]["IS_ANOMALY"] for r in normal_rows) / len(normal_rows)
        episodes = {}
        for r in rows:
            if r["LABEL"] == 1:
                episodes.setdefault((r["EPISODE"], r["FAULT"]), []).append(r["A"]["IS_ANOMALY"])
        found = {k: any(v) for k, v in episodes.items()}
        by_kind = {kind: (sum(f for (_, k), f in found.items() if k == kind),
                          sum(1 for (_, k) in found if k == kind)) for kind in FAULTS}
        rows_found = sum(r["A"]["IS_ANOMALY"] for r in rows if r["LABEL"] == 1) / sum(r["LABEL"] for r in rows)
        print(f"  pump@1: {sum(found.values())}/{len(found)} fault episodes found {by_kind}, "
              f"{rows_found:.1%} of fault rows, {false_rate:.2%} of normal rows alerted")
        assert sum(found.values()) >= 0.9 * len(found), by_kind
        assert false_rate < 0.01, false_rate
    finally:
        server.stop()


if __name__ == "__main__":
    main_with_broker([test_a_model_trained_on_a_users_csv_finds_its_faults])
