"""The retraining loop: train on the last hours of a topic, register the result as a new version, watch
it in shadow beside production, and promote it when it alerts about as often as production does.

    python retrain.py --server http://localhost:8088 --kafka localhost:9092 --topic telemetry \\
        --model car --hours 6 --exclude ts,label,episode --watch 300

1. Reads the topic's JSON records of the last `--hours` (by their Kafka timestamps).
2. Trains the Gaussian model of train_user.py on them and registers it as the model's next version.
3. Points `candidate` at it and rolls it out as rollout.py does: production's shadow for `--watch`
   seconds, then production if it alerts at most `--tolerance` times as often (or both under `--floor`).

With no production alias yet, the new version becomes production at once.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

import numpy as np

from rollout import ksql, watch
from train import gaussian, scores
from train_user import columns_of, json_record, matrix, register


def recent_records(bootstrap, topic, hours):
    """The topic's JSON objects with a timestamp in the last `hours`."""
    from confluent_kafka import Consumer, TopicPartition
    since = int((time.time() - hours * 3600) * 1000)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"retrain-{time.time()}",
                  "enable.auto.commit": False})
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    starts = c.offsets_for_times([TopicPartition(topic, p, since) for p in partitions], timeout=10)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    c.assign([tp for tp in starts if tp.offset >= 0])
    todo = {tp.partition for tp in starts if 0 <= tp.offset < ends[tp.partition]}
    records = []
    while todo:
        batch = c.consume(num_messages=10000, timeout=2.0)
        if not batch:
            break
        for m in batch:
            if m.error():
                continue
            if m.offset() + 1 >= ends[m.partition()]:
                todo.discard(m.partition())
            v = json_record(m.value())
            if v is not None:
                records.append(v)
    c.close()
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--features")
    ap.add_argument("--exclude", default="")
    ap.add_argument("--quantile", type=float, default=0.9995)
    ap.add_argument("--margin", type=float, default=1.5)
    ap.add_argument("--watch", type=float, default=300.0, help="seconds in shadow before deciding")
    ap.add_argument("--tolerance", type=float, default=1.5)
    ap.add_argument("--floor", type=float, default=0.001, help="alert rates below this count as equal")
    a = ap.parse_args()
    server = a.server.rstrip("/")
    records = recent_records(a.kafka, a.topic, a.hours)
    if not records:
        sys.exit(f"no records of the last {a.hours} h in {a.topic}")
    names = columns_of(records, a.features.split(",") if a.features else None, set(a.exclude.split(",")))
    x = matrix(records, names)
    model = gaussian(x)
    model.graph.name = a.model
    threshold = float(np.quantile(scores(model, x)[0], a.quantile) * a.margin)
    card = {"name": a.model, "features": names, "threshold": threshold,
            "threshold_rule": f"the {a.quantile} quantile of the training data's scores times {a.margin}",
            "training": {"data": f"{len(x)} rows of the last {a.hours} h of topic {a.topic}",
                         "command": " ".join(sys.argv)}}
    print(f"trained on {len(x)} rows of the last {a.hours} h; threshold {threshold:.3f}")
    new = register(server, a.model, card, model.SerializeToString(), "candidate")
    status, described = 200, None
    try:
        with urllib.request.urlopen(f"{server}/models/{a.model}", timeout=30) as r:
            described = json.load(r)
    except urllib.error.HTTPError as e:
        status = e.code
    production = (described or {}).get("aliases", {}).get("production") if status == 200 else None
    if not isinstance(production, int):
        print(ksql(server, f"ALTER MODEL {a.model} SET ALIAS production = {new};")[0]["commandStatus"]["message"])
        return
    watch(server, a.model, production, new, a.watch, a.tolerance, a.floor)


if __name__ == "__main__":
    main()
