"""Detection quality of the committed models on a held-out labelled set generated with another seed:
per model (windowed models on its 30-second windows), overall and per fault kind, precision/recall/F1 per event and per episode, ROC-AUC, false
alarms per car-hour and the median detection delay, at the threshold on each model's card.

    python evaluate.py [--cars 30] [--hours 2] [--seed 3] [--faults 3] [--version 1]
"""

import argparse
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import telemetry  # noqa: E402
from metrics import alarms  # noqa: E402
from onnx_session import session  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "models")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cars", type=int, default=30)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--faults", type=float, default=3.0)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = ap.parse_args()
    data = {"event": telemetry.arrays(a.cars, a.hours, a.seed, a.faults),
            "window": telemetry.windows(a.cars, a.hours, a.seed, a.faults)}
    car_hours = a.cars * a.hours
    report = {}
    for name in sorted(os.listdir(MODELS)):
        folder = os.path.join(MODELS, name, str(a.version))
        if not os.path.isdir(folder):
            continue
        card = json.load(open(os.path.join(folder, "card.json")))
        x, label, kind, car = data["window" if "window" in card else "event"]
        step = card["window"]["size_seconds"] if "window" in card else 1
        score = session(os.path.join(folder, "model.onnx")).run(["score"], {"X": x.astype("float32")})[0]
        alert = score >= card["threshold"]
        rows = {"all": alarms(alert, label, car, car_hours, score, step)}
        for fault in telemetry.FAULTS:
            # One kind against normal driving: the other kinds' events are left out.
            keep = (kind == fault) | (label == 0)
            if (kind == fault).any():
                rows[fault] = alarms(alert[keep], label[keep], car[keep], car_hours, score[keep], step)
        report[f"{name}@{a.version}"] = rows
    if a.json:
        print(json.dumps(report, indent=2))
        return
    print(f"held-out set: {a.cars} cars x {a.hours} h, seed {a.seed}, {a.faults} fault episodes per car on average")
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
