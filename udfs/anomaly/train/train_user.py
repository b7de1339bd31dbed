"""Trains an anomaly-detection model on a user's own normal data — a CSV file of their columns, or a
Kafka topic of JSON records — and registers it with a running Eddy server as a new version of a model
(POST /models/<name>), optionally pointing an alias at it.

The model is the Gaussian of train.py (the squared Mahalanobis distance from normal, each feature's
share of it as the cause) over the chosen numeric columns. Without labelled faults, the threshold is a
high quantile of the training data's own scores times a margin (a score that normal data reaches
once in `1 / (1 - quantile)` rows, and then some); the card says so.

    python train_user.py --csv pumps.csv --features pressure_bar,flow_lpm,vibration_mm_s,temp_c \\
        --model pump --server http://localhost:8088 --alias candidate
    python train_user.py --kafka localhost:9092 --topic telemetry --max-records 200000 \\
        --exclude ts,label,episode --model car --out /tmp/car-model
"""

import argparse
import base64
import csv
import hashlib
import json
import os
import sys
import urllib.request

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from train import gaussian, scores  # noqa: E402


def numeric(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def columns_of(records, features, exclude):
    """The feature columns: those named, or every column numeric in the first records but excluded."""
    if features:
        return features
    first = records[: min(len(records), 100)]
    names = [k for k in first[0] if k not in exclude and all(numeric(r.get(k)) is not None for r in first)]
    if not names:
        sys.exit("no numeric columns to train on: name them with --features")
    return names


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_kafka(bootstrap, topic, max_records, timeout=30):
    """JSON records of `topic` from its beginning, up to `max_records` (those that are not JSON objects
    are skipped)."""
    import time
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"train-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    records, idle, deadline = [], 0, time.time() + timeout
    while len(records) < max_records and idle < 5 and time.time() < deadline:
        batch = [m for m in c.consume(num_messages=10000, timeout=1.0) if not m.error()]
        idle = 0 if batch else idle + 1
        records += [v for v in map(json_record, (m.value() for m in batch)) if v is not None]
    c.close()
    return records[:max_records]


def json_record(value):
    """A record's value as a JSON object, or None when it is not one."""
    try:
        v = json.loads(value)
    except (TypeError, ValueError):
        return None
    return v if isinstance(v, dict) else None


def matrix(records, names):
    """The rows with a number in every feature column, as float32."""
    rows = [[numeric(r.get(n)) for n in names] for r in records]
    rows = [r for r in rows if all(v is not None for v in r)]
    if len(rows) < 2 * len(names) + 10:
        sys.exit(f"{len(rows)} complete rows are too few to train on {len(names)} features")
    return np.array(rows, dtype=np.float32)


def register(server, name, card, onnx, alias):
    body = json.dumps({"card": card, "onnx": base64.b64encode(onnx).decode()}).encode()
    req = urllib.request.Request(f"{server}/models/{name}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        answer = json.load(r)
    message = answer["commandStatus"]["message"]
    version = int(message.split("version ")[1].split()[0])
    print(message)
    if alias:
        sql = f"ALTER MODEL {name} SET ALIAS {alias} = {version};"
        req = urllib.request.Request(f"{server}/ksql", data=json.dumps({"ksql": sql}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            print(json.load(r)[0]["commandStatus"]["message"])
    return version


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="a CSV file of normal data, one column per feature")
    source.add_argument("--kafka", help="bootstrap servers of a topic of normal data (JSON records)")
    ap.add_argument("--topic", help="with --kafka: the topic")
    ap.add_argument("--max-records", type=int, default=500_000)
    ap.add_argument("--features", help="comma-separated columns (default: every numeric one)")
    ap.add_argument("--exclude", default="", help="comma-separated columns to leave out of the default")
    ap.add_argument("--quantile", type=float, default=0.9995, help="of the training scores, for the threshold")
    ap.add_argument("--margin", type=float, default=1.5, help="the threshold is the quantile's score times this")
    ap.add_argument("--model", required=True, help="the model's name in the catalog")
    ap.add_argument("--server", help="an Eddy server to register the model with (http://host:8088)")
    ap.add_argument("--alias", help="with --server: point this alias at the new version")
    ap.add_argument("--out", help="also write model.onnx and card.json into this folder")
    a = ap.parse_args()
    if a.kafka:
        if not a.topic:
            ap.error("--kafka needs --topic")
        records, data = read_kafka(a.kafka, a.topic, a.max_records), f"topic {a.topic} ({a.kafka})"
    else:
        records, data = read_csv(a.csv), f"file {os.path.basename(a.csv)}"
    if not records:
        sys.exit("no records to train on")
    names = columns_of(records, a.features.split(",") if a.features else None, set(a.exclude.split(",")))
    x = matrix(records, names)
    model = gaussian(x)
    model.graph.name = a.model
    train_scores = scores(model, x)[0]
    threshold = float(np.quantile(train_scores, a.quantile) * a.margin)
    onnx = model.SerializeToString()
    card = {
        "name": a.model,
        "features": names,
        "input": f"X: float32 [N, {len(names)}], the features in this order, raw units",
        "outputs": {"score": "float32 [N], the squared Mahalanobis distance from normal",
                    "contributions": f"float32 [N, {len(names)}], each feature's share of the score"},
        "threshold": threshold,
        "threshold_rule": f"the {a.quantile} quantile of the training data's scores times {a.margin}",
        "training": {"data": f"{len(x)} rows of {data}", "command": " ".join(sys.argv)},
        "sha256": hashlib.sha256(onnx).hexdigest(),
    }
    print(f"trained on {len(x)} rows of {len(names)} features ({', '.join(names)}); threshold {threshold:.3f}")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "model.onnx"), "wb") as f:
            f.write(onnx)
        with open(os.path.join(a.out, "card.json"), "w") as f:
            json.dump(card, f, indent=2)
    if a.server:
        register(a.server.rstrip("/"), a.model, card, onnx, a.alias)


if __name__ == "__main__":
    main()
