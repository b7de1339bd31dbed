"""Detection quality of the committed models on a held-out labelled set generated with another seed:
per model (windowed models on the windows their card names), overall and per fault kind, precision/recall/
F1 per event and per episode, ROC-AUC, false alarms per car-hour and the median detection delay (from a
fault's first second to the end of the first window that alerts), at the threshold on each model's card;
and the online baseline (online.py, as ONLINE_ANOMALY computes it) on the hopping windows.

    python evaluate.py [--cars 30] [--hours 2] [--seed 3] [--faults 3] [--version 1] [--drift]
"""

import argparse
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import online  # noqa: E402
import telemetry  # noqa: E402
from metrics import alarms  # noqa: E402
from onnx_session import session  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# The online baseline as car-alerts.sql runs it: ONLINE_ANOMALY(features, 1440, 4.0, 120) over the
# 20-second windows every 5 seconds (a half-life of 2 hours, 10 minutes to warm up).
ONLINE = {"window": {"size_seconds": 20, "advance_seconds": 5}, "half_life": 1440, "threshold": 4.0, "warmup": 120}
MODELS = os.path.join(HERE, "..", "models")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cars", type=int, default=30)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--faults", type=float, default=3.0)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--drift", action="store_true", help="cars whose normal behaviour drifts (telemetry.Drift)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = ap.parse_args()
    car_hours = a.cars * a.hours
    cache = {}

    def data(window):
        """(features, label, kind, car, step, timing) per event, or per window of the card's kind."""
        size, advance = (window["size_seconds"], window.get("advance_seconds")) if window else (None, None)
        if (size, advance) not in cache:
            if size is None:
                x, label, kind, car = telemetry.arrays(a.cars, a.hours, a.seed, a.faults, drift=a.drift)
                cache[size, advance] = x, label, kind, car, 1, None
            else:
                w = telemetry.windows(a.cars, a.hours, a.seed, a.faults, size, advance, drift=a.drift)
                cache[size, advance] = w.features, w.label, w.kind, w.car, advance or size, (w.end_s, w.onset_s)
        return cache[size, advance]

    def report_of(alert, score, label, kind, car, step, timing):
        rows = {"all": alarms(alert, label, car, car_hours, score, step, timing)}
        for fault in telemetry.FAULTS:
            # One kind against normal driving: the other kinds' events are left out.
            keep = (kind == fault) | (label == 0)
            if (kind == fault).any():
                kept = timing and (timing[0][keep], timing[1][keep])
                rows[fault] = alarms(alert[keep], label[keep], car[keep], car_hours, score[keep], step, kept)
        return rows

    report = {}
    for name in sorted(os.listdir(MODELS)):
        folder = os.path.join(MODELS, name, str(a.version))
        if not os.path.isdir(folder):
            continue
        card = json.load(open(os.path.join(folder, "card.json")))
        x, label, kind, car, step, timing = data(card.get("window"))
        score = session(os.path.join(folder, "model.onnx")).run(["score"], {"X": x.astype("float32")})[0]
        report[f"{name}@{a.version}"] = report_of(score >= card["threshold"], score, label, kind, car, step, timing)
    x, label, kind, car, step, timing = data(ONLINE["window"])
    score = online.scores(online.log_sd(x), car, ONLINE["half_life"], ONLINE["warmup"], ONLINE["threshold"])
    # A row still warming up has no score: it does not alert (and ranks lowest).
    score = np.nan_to_num(score, nan=-1.0)
    report["online"] = report_of(score >= ONLINE["threshold"], score, label, kind, car, step, timing)
    if a.json:
        print(json.dumps(report, indent=2))
        return
    drift = ", normal behaviour drifting" if a.drift else ""
    print(f"held-out set: {a.cars} cars x {a.hours} h, seed {a.seed}, {a.faults} fault episodes per car on average{drift}")
    head = ["model", "faults", "ep", "det", "ep_P", "ep_R", "ep_F1", "ev_P", "ev_R", "ev_F1", "AUC", "FA/car-h",
            "delay_s"]
    print(" ".join(f"{h:>12}" if i else f"{h:<16}" for i, h in enumerate(head)))
    for model, rows in report.items():
        for fault, m in rows.items():
            values = [model, fault, m["episodes"], m["detected"], m["episode_precision"], m["episode_recall"],
                      m["episode_f1"], m["event_precision"], m["event_recall"], m["event_f1"], m.get("roc_auc"),
                      m["false_alarms_per_car_hour"], m["median_delay_s"]]
            print(" ".join(f"{str(v):>12}" if i else f"{str(v):<16}" for i, v in enumerate(values)))


if __name__ == "__main__":
    main()
