"""The online baseline (ONLINE_ANOMALY, udfs/anomaly/src/online.rs) through a running server and the real
broker, on cars whose normal behaviour drifts (telemetry.Drift: a season's falling temperatures, worn
tyres): readings -> 20-second windows every 5 seconds (EMIT FINAL) -> a table of each car's baseline,
emitted per record. Every scored window in the baseline topic is compared with udfs/anomaly/train/online.py
on the same windows, and the detection figures from the topic are set beside the static model trained
before the drift (gaussian_20s@1, scored offline on the same windows): the online baseline detects at
least 90 % of the fault episodes with fewer false alarms per car-hour.

Run by scripts/test:  python tests/e2e/test_online.py --server-bin target/release/eddy-server
(EDDY_ONLINE_CARS=N for another number of cars than 30)
"""

import json
import os
import sys
import tempfile
import time

import numpy as np
from ksqldb import KSQLdbClient

from test_e2e import ROOT, Server, main_with_broker, topic_records

sys.path.insert(0, os.path.join(ROOT, "udfs/anomaly/train"))
import online  # noqa: E402
import telemetry  # noqa: E402
from metrics import alarms  # noqa: E402
from onnx_session import session  # noqa: E402

CARS = int(os.environ.get("EDDY_ONLINE_CARS", "30"))
HOURS, SEED = 4, 4
SIZE, ADVANCE = 20, 5


def statements():
    sensors = telemetry.FEATURES
    columns = ", ".join(f"{f} DOUBLE" for f in sensors)
    aggregates = ", ".join([f"AVG({f}) AS {f}_avg" for f in sensors] + [f"STDDEV_POP({f}) AS {f}_sd" for f in sensors])
    window_columns = ", ".join(f"{f} DOUBLE" for f in telemetry.WINDOW_FEATURES)
    # The features as online.log_sd makes them: the means, then LN(sd + 0.001).
    fields = ", ".join([f"{f}_avg := {f}_avg" for f in sensors] +
                       [f"{f}_lsd := LN({f}_sd + {online.SD_FLOOR})" for f in sensors])
    return [
        f"CREATE STREAM telemetry (car_id STRING KEY, ts BIGINT, {columns}, label INT, fault STRING, episode INT) "
        "WITH (kafka_topic='telemetry', value_format='JSON', partitions=4, timestamp='ts');",
        f"CREATE TABLE car_windows AS SELECT car_id, COUNT(*) AS readings, {aggregates} FROM telemetry "
        f"WINDOW HOPPING (SIZE {SIZE} SECONDS, ADVANCE BY {ADVANCE} SECONDS, GRACE PERIOD 10 SECONDS) "
        "GROUP BY car_id EMIT FINAL;",
        f"CREATE STREAM car_window_features (car_id STRING KEY, readings BIGINT, {window_columns}) WITH "
        f"(kafka_topic='CAR_WINDOWS', value_format='JSON', window_type='HOPPING', window_size='{SIZE} SECONDS');",
        # Whole windows only (a car reports once a second).
        f"CREATE STREAM car_features AS SELECT car_id, WINDOWSTART AS window_start, STRUCT({fields}) AS features "
        f"FROM car_window_features WHERE readings = {SIZE};",
        "CREATE TABLE car_baselines AS SELECT car_id, LATEST_BY_OFFSET(window_start) AS window_start, "
        "ONLINE_ANOMALY(features, 1440, 4.0, 120) AS baseline FROM car_features GROUP BY car_id;",
    ]


def test_online_baseline_follows_drift(ctx):
    server = Server(ctx.server_bin, ctx.broker.bootstrap, tempfile.mkdtemp(prefix="eddy-online-"),
                    f"online{os.getpid()}", ["--plugin-dir", os.path.join(ROOT, "target/plugins/dir")])
    try:
        client = KSQLdbClient(server.url)
        # Every window's score is emitted, not only each car's last per commit.
        props = {"auto.offset.reset": "earliest", "cache.max.bytes.buffering": "0"}
        for s in statements():
            client.ksql(s, stream_properties=props)
        started = time.time()
        sent = telemetry.produce(ctx.broker.bootstrap, "telemetry", CARS, HOURS, SEED, 3.0, rate=1e9, drift=True)
        print(f"   produced {sent} readings of {CARS} drifting cars in {time.time() - started:.1f}s")

        w = telemetry.windows(CARS, HOURS, SEED, 3.0, SIZE, ADVANCE, drift=True)
        per_car = len(w.car) // CARS
        # A car's last windows never close (no later reading): what the topic has is compared.
        records = topic_records(ctx.broker.bootstrap, "CAR_BASELINES", CARS * (per_car - 8))
        scored = np.zeros(len(w.car), dtype=bool)
        score = np.full(len(w.car), np.nan)
        for key, v in records:
            car = int(key.decode().split("-")[1])
            row = car * per_car + (v["WINDOW_START"] - telemetry.START_MS) // 1000 // ADVANCE
            assert not scored[row], f"window {row} scored twice"
            scored[row] = True
            b = v["BASELINE"]
            score[row] = np.nan if b["SCORE"] is None else b["SCORE"]
        missing = np.flatnonzero(~scored)
        assert all(w.end_s[r] > HOURS * 3600 - 60 for r in missing), f"{len(missing)} windows not scored"

        # The same windows through online.py (float64 features where the plugin reads float32: scores
        # agree closely, alerts except near the threshold).
        reference = online.scores(online.log_sd(w.features), w.car, 1440, 120, 4.0)
        both = scored & ~np.isnan(reference)
        assert (np.isnan(score[scored]) == np.isnan(reference[scored])).all(), "warm-up differs"
        close = np.isclose(score[both], reference[both], rtol=1e-3, atol=1e-3)
        assert close.mean() >= 0.995, f"{int((~close).sum())} of {int(both.sum())} scores differ from online.py"

        car_hours = CARS * HOURS
        timing = (w.end_s[scored], w.onset_s[scored])
        alert = np.nan_to_num(score, nan=-1.0) >= 4.0
        got = alarms(alert[scored], w.label[scored], w.car[scored], car_hours, step=ADVANCE, timing=timing)
        card = json.load(open(os.path.join(ROOT, "udfs/anomaly/models/gaussian_20s/1/card.json")))
        static = session(os.path.join(ROOT, "udfs/anomaly/models/gaussian_20s/1/model.onnx")).run(
            ["score"], {"X": w.features.astype(np.float32)})[0] >= card["threshold"]
        before = alarms(static[scored], w.label[scored], w.car[scored], car_hours, step=ADVANCE, timing=timing)
        for name, m in [("online baseline (from the topic)", got), ("gaussian_20s@1 (trained before the drift)", before)]:
            print(f"   {name}: {m['detected']}/{m['episodes']} episodes, {m['false_alarms_per_car_hour']} false "
                  f"alarms per car-hour, median delay {m['median_delay_s']} s")
        assert got["episode_recall"] >= 0.9, got
        assert got["false_alarms_per_car_hour"] < before["false_alarms_per_car_hour"], (got, before)
    finally:
        server.stop()


if __name__ == "__main__":
    main_with_broker([test_online_baseline_follows_drift])
