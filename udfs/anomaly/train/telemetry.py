"""Connected-car telemetry: every car reports 14 sensors once a second. Normal driving is simulated with
physically linked signals (speed drives gear and rpm, throttle and load drive fuel, the engine warms the
coolant and the oil, the alternator holds the battery voltage, tyres warm up), each car with its own
baselines; faults are injected as labelled episodes of six kinds.

    python telemetry.py --cars 50 --hours 2 --seed 1 --out train.csv            # a file for training
    python telemetry.py --cars 20 --hours 1 --seed 2 --faults 4 --out test.csv  # held-out, more faults
    python telemetry.py --cars 100 --hours 1 --seed 3 --kafka HOST:PORT --topic telemetry --rate 20000
    python telemetry.py --cars 50 --hours 2 --seed 11 --mqtt HOST:1883 --rate 5000  # as cars do: MQTT

Rows: car_id, ts (epoch ms), the FEATURES, then label (1 inside a fault episode), fault (its kind or
empty) and episode (a number per episode, -1 outside). The same arguments give the same rows.
"""

import argparse
import csv
import json
import sys
import time
from typing import NamedTuple

import numpy as np

FEATURES = [
    "speed_kmh", "rpm", "throttle_pct", "engine_load_pct", "coolant_c", "oil_c", "intake_c",
    "battery_v", "tire_fl_bar", "tire_fr_bar", "tire_rl_bar", "tire_rr_bar", "fuel_rate_lph", "ambient_c",
]
FAULTS = ["spike", "stuck", "drift", "cooling", "alternator", "tire_leak"]
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
# Readings are written with this many decimals.
DECIMALS = 4
TIRES = [FEATURES.index(t) for t in ("tire_fl_bar", "tire_fr_bar", "tire_rl_bar", "tire_rr_bar")]
# Sensors a spike, a stuck reading or a drift can hit (not the ambient temperature, which the car
# does not control).
SENSORS = [i for i, f in enumerate(FEATURES) if f != "ambient_c"]
# Gear upshift speeds (km/h) and engine revolutions per km/h in each gear.
SHIFTS = np.array([0.0, 18.0, 32.0, 50.0, 68.0, 88.0])
RATIOS = np.array([115.0, 68.0, 47.0, 35.0, 28.0, 23.0])


def drive(rng, seconds):
    """Speed (km/h) over a trip made of idle, city and highway segments."""
    speed = np.empty(seconds)
    v, t = 0.0, 0
    while t < seconds:
        mode = rng.choice(["idle", "city", "highway"], p=[0.15, 0.5, 0.35])
        length = int(rng.exponential({"idle": 60, "city": 400, "highway": 600}[mode])) + 20
        cruise = {"idle": 0.0, "city": rng.uniform(25, 50), "highway": rng.uniform(85, 125)}[mode]
        period = rng.uniform(40, 90)
        for k in range(min(length, seconds - t)):
            target = cruise
            if mode == "city":
                # Traffic: stop and go.
                target = cruise * max(0.0, np.sin(2 * np.pi * k / period) + 0.35) / 1.35
            gap = target - v
            v += np.clip(0.08 * gap, -3.5, 2.5) + rng.normal(0, 0.3)
            v = max(v, 0.0)
            speed[t + k] = v
        t += length
    return speed


class Drift(NamedTuple):
    """How a car's normal behaviour moves over the whole run (a season compressed into hours): the
    ambient temperature falls, the tyres wear and lose pressure, and worn tyres cost fuel."""
    ambient_c: float
    tire_bar: float
    fuel: float

    @staticmethod
    def draw(rng):
        return Drift(ambient_c=-rng.uniform(15, 25), tire_bar=-rng.uniform(0.08, 0.15), fuel=rng.uniform(0.05, 0.12))


def car(rng, seconds, drift=None):
    """One car's normal readings, shape (seconds, len(FEATURES)), drifting as `drift` says."""
    progress = np.arange(seconds) / seconds
    speed = drive(rng, seconds)
    accel = np.diff(speed, prepend=speed[0])
    gear = np.searchsorted(SHIFTS, speed, side="right") - 1
    rpm = np.maximum(780 + rng.normal(0, 15, seconds), speed * RATIOS[gear] * rng.uniform(0.95, 1.05))
    rpm += rng.normal(0, 25, seconds)
    throttle = np.clip(4 + 0.28 * speed + 18 * np.maximum(accel, 0) + rng.normal(0, 1.5, seconds), 0, 100)
    load = np.clip(12 + 0.55 * throttle + 0.004 * (rpm - 800) + rng.normal(0, 1.5, seconds), 0, 100)
    ambient0 = rng.uniform(0, 30)
    ambient = ambient0 + np.cumsum(rng.normal(0, 0.002, seconds))
    if drift:
        ambient += drift.ambient_c * progress
    thermostat = rng.uniform(87, 93)
    coolant, oil = np.empty(seconds), np.empty(seconds)
    c = o = ambient0 + rng.uniform(0, 5)
    for i in range(seconds):
        c += (thermostat + 0.04 * load[i] - c) * 0.004
        o += (c + 4 + 0.09 * load[i] - o) * 0.0025
        coolant[i], oil[i] = c, o
    coolant += rng.normal(0, 0.15, seconds)
    oil += rng.normal(0, 0.2, seconds)
    intake = ambient + 6 + 18 * np.exp(-speed / 25) + rng.normal(0, 0.4, seconds)
    battery = 14.1 + rng.normal(0, 0.08) - 0.15 * (rpm < 900) + rng.normal(0, 0.04, seconds)
    warm = 1 - np.exp(-np.cumsum(speed > 5) / 1500)
    tires = [
        rng.uniform(2.25, 2.5) + 0.004 * (ambient - 20) + 0.14 * warm + rng.normal(0, 0.006, seconds)
        for _ in range(4)
    ]
    fuel = 0.7 + 0.00055 * rpm * (0.3 + load / 100) + rng.normal(0, 0.08, seconds)
    if drift:
        tires = [t + drift.tire_bar * progress for t in tires]
        fuel *= 1 + drift.fuel * progress
    columns = [speed, rpm, throttle, load, coolant, oil, intake, battery, *tires, fuel, ambient]
    return np.stack(columns, axis=1)


def inject(rng, x, kind):
    """Puts one fault episode of `kind` into a car's readings; returns (start, end) seconds."""
    n = len(x)
    std = x.std(axis=0) + 1e-6
    length = {"spike": rng.integers(3, 11), "stuck": rng.integers(300, 900),
              "drift": rng.integers(600, 1800), "cooling": rng.integers(600, 1500),
              "alternator": rng.integers(600, 1500), "tire_leak": rng.integers(900, 2400)}[kind]
    # Not in the first 20 minutes, while the engine warms up.
    start = int(rng.integers(1200, max(1201, n - length)))
    end = min(n, start + int(length))
    span = np.arange(end - start)
    if kind == "spike":
        s = rng.choice(SENSORS)
        x[start:end, s] += rng.choice([-1, 1]) * rng.uniform(6, 10) * std[s]
    elif kind == "stuck":
        s = rng.choice(SENSORS)
        x[start:end, s] = x[start, s]
    elif kind == "drift":
        s = rng.choice(SENSORS)
        x[start:end, s] += rng.choice([-1, 1]) * rng.uniform(4, 8) * std[s] * span / len(span)
    elif kind == "cooling":
        rise = rng.uniform(0.02, 0.05) * span
        x[start:end, FEATURES.index("coolant_c")] += rise
        x[start:end, FEATURES.index("oil_c")] += 0.6 * rise
    elif kind == "alternator":
        b = FEATURES.index("battery_v")
        x[start:end, b] = 12.6 - 0.9 * (1 - np.exp(-span / 400)) + rng.normal(0, 0.04, len(span))
    elif kind == "tire_leak":
        t = rng.choice(TIRES)
        x[start:end, t] -= rng.uniform(0.0002, 0.0006) * span
    return start, end


def generate(cars, hours, seed, faults, drift=False):
    """Rows of (car, second, readings, label, fault, episode), car by car; with `drift`, each car's
    normal behaviour drifts (`Drift`, drawn from a generator of its own: the rest is as without)."""
    rng = np.random.default_rng(seed)
    drifts = np.random.default_rng(seed + 7919)
    seconds = int(hours * 3600)
    episode = 0
    for c in range(cars):
        x = car(rng, seconds, Drift.draw(drifts) if drift else None)
        label = np.zeros(seconds, dtype=np.int8)
        kind = np.full(seconds, "", dtype=object)
        ep = np.full(seconds, -1)
        # Poisson number of episodes per car; they do not overlap.
        for _ in range(rng.poisson(faults)):
            f = FAULTS[rng.integers(len(FAULTS))]
            saved = x.copy()
            start, end = inject(rng, x, f)
            if label[start:end].any():
                x = saved
                continue
            label[start:end], kind[start:end], ep[start:end] = 1, f, episode
            episode += 1
        yield f"car-{c:04d}", x, label, kind, ep


def arrays(cars, hours, seed, faults, decimals=None, dtype=np.float32, drift=False):
    """All cars' readings as `dtype` [rows, features] (rounded to `decimals` first, as `produce` writes
    them, when given), with label, fault kind and car index per row."""
    parts = list(generate(cars, hours, seed, faults, drift))
    x = np.concatenate([p[1] for p in parts])
    x = (x if decimals is None else np.round(x, decimals)).astype(dtype)
    label = np.concatenate([p[2] for p in parts])
    kind = np.concatenate([p[3] for p in parts])
    car_of = np.concatenate([np.full(len(p[1]), i) for i, p in enumerate(parts)])
    return x, label, kind, car_of


# Windowed models read per-car tumbling windows of this many seconds.
WINDOW_S = 30
# A windowed model's features: every sensor's mean over the window, then every sensor's population
# standard deviation (SQL: AVG(x) and STDDEV_POP(x)).
WINDOW_FEATURES = [f"{f}_avg" for f in FEATURES] + [f"{f}_sd" for f in FEATURES]


class Windows(NamedTuple):
    """Per-car windows in car order, each car's in time order."""
    features: np.ndarray  # float64 [windows, WINDOW_FEATURES], as SQL computes them
    label: np.ndarray  # 1 when any of the window's events is in a fault episode
    kind: np.ndarray  # the fault kind of its labelled events, or ""
    car: np.ndarray  # the car's index
    end_s: np.ndarray  # the window's end in seconds from the car's first reading: when it is scored
    onset_s: np.ndarray  # the second of its first labelled event, -1 when none


def windows(cars, hours, seed, faults, window_s=WINDOW_S, advance_s=None, drift=False):
    """Per-car windows of `window_s` seconds starting every `advance_s` seconds (tumbling when not
    given) over the readings as `produce` writes them. Only whole windows: the hopping windows that
    start before a car's first reading are left out."""
    advance_s = advance_s or window_s
    x, label, kind, _ = arrays(cars, hours, seed, faults, decimals=DECIMALS, dtype=np.float64, drift=drift)
    seconds = int(hours * 3600)
    per_car = (seconds - window_s) // advance_s + 1
    starts = np.arange(per_car) * advance_s
    x = x.reshape(cars, seconds, len(FEATURES))
    # [cars, per_car, features, window_s]: each window's readings, without copying.
    view = np.lib.stride_tricks.sliding_window_view(x, window_s, axis=1)[:, starts]
    # Not x.std(): the mean of each window first, in float64, as AVG and STDDEV_POP do.
    mean = view.mean(axis=3)
    sd = np.sqrt(((view - mean[..., None]) ** 2).mean(axis=3))
    features = np.concatenate([mean, sd], axis=2).reshape(cars * per_car, -1)
    label = np.lib.stride_tricks.sliding_window_view(label.reshape(cars, seconds), window_s, axis=1)[:, starts]
    kind = np.lib.stride_tricks.sliding_window_view(kind.reshape(cars, seconds), window_s, axis=1)[:, starts]
    window_label = label.max(axis=2).reshape(-1)
    window_kind = np.array([max(k, key=bool) for k in kind.reshape(cars * per_car, window_s)], dtype=object)
    first = label.reshape(cars * per_car, window_s).argmax(axis=1)
    begin = np.tile(starts, cars)
    onset = np.where(window_label == 1, begin + first, -1)
    return Windows(features, window_label, window_kind, np.repeat(np.arange(cars), per_car), begin + window_s,
                   onset)


def rows(cars, hours, seed, faults, drift=False):
    for car_id, x, label, kind, ep in generate(cars, hours, seed, faults, drift):
        for i in range(len(x)):
            yield car_id, START_MS + i * 1000, x[i], int(label[i]), kind[i], int(ep[i])


def write_csv(path, cars, hours, seed, faults, drift=False):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["car_id", "ts", *FEATURES, "label", "fault", "episode"])
        for car_id, ts, x, label, kind, ep in rows(cars, hours, seed, faults, drift):
            w.writerow([car_id, ts, *(f"{v:.4f}" for v in x), label, kind, ep])


def produce(bootstrap, topic, cars, hours, seed, faults, rate, drift=False):
    """Produces JSON events keyed by car, all cars' second i before second i+1, at about `rate`/s."""
    from confluent_kafka import Producer
    data = list(generate(cars, hours, seed, faults, drift))
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    started, sent = time.time(), 0
    for i in range(int(hours * 3600)):
        for car_id, x, label, kind, ep in data:
            event = {"car_id": car_id, "ts": START_MS + i * 1000,
                     **{f: round(float(v), DECIMALS) for f, v in zip(FEATURES, x[i])},
                     "label": int(label[i]), "fault": kind[i], "episode": int(ep[i])}
            p.produce(topic, json.dumps(event).encode(), key=car_id.encode())
            sent += 1
            if sent % 10000 == 0:
                p.poll(0)
                ahead = sent / rate - (time.time() - started)
                if ahead > 0:
                    time.sleep(ahead)
    if p.flush(60) != 0:
        sys.exit("not every event was delivered")
    return sent


def publish_mqtt(server, cars, hours, seed, faults, rate, drift=False):
    """Publishes the same JSON events over MQTT, QoS 1, each car to cars/<car_id>/telemetry, all cars'
    second i before second i+1, at about `rate`/s."""
    import paho.mqtt.client as mqtt
    host, _, port = server.partition(":")
    data = list(generate(cars, hours, seed, faults, drift))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"telemetry-{seed}")
    client.max_inflight_messages_set(500)
    client.connect(host, int(port or 1883))
    client.loop_start()
    started, sent, pending = time.time(), 0, []
    for i in range(int(hours * 3600)):
        for car_id, x, label, kind, ep in data:
            event = {"car_id": car_id, "ts": START_MS + i * 1000,
                     **{f: round(float(v), DECIMALS) for f, v in zip(FEATURES, x[i])},
                     "label": int(label[i]), "fault": kind[i], "episode": int(ep[i])}
            while (info := client.publish(f"cars/{car_id}/telemetry", json.dumps(event), qos=1)).rc:
                time.sleep(0.01)
            pending.append(info)
            sent += 1
            if len(pending) > 2000:
                for p in pending[:1000]:
                    p.wait_for_publish(60)
                del pending[:1000]
                ahead = sent / rate - (time.time() - started)
                if ahead > 0:
                    time.sleep(ahead)
    for p in pending:
        p.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()
    return sent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cars", type=int, default=50)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", type=float, default=2.0, help="mean fault episodes per car")
    ap.add_argument("--out", help="write a CSV file")
    ap.add_argument("--kafka", help="bootstrap servers to produce to")
    ap.add_argument("--topic", default="telemetry")
    ap.add_argument("--mqtt", help="host:port of an MQTT broker to publish to (cars/<car_id>/telemetry)")
    ap.add_argument("--rate", type=float, default=10000.0, help="events per second when producing")
    ap.add_argument("--drift", action="store_true", help="normal behaviour drifts over the run (a season)")
    a = ap.parse_args()
    if a.out:
        write_csv(a.out, a.cars, a.hours, a.seed, a.faults, a.drift)
    if a.kafka:
        n = produce(a.kafka, a.topic, a.cars, a.hours, a.seed, a.faults, a.rate, a.drift)
        print(f"produced {n} events to {a.topic}")
    if a.mqtt:
        n = publish_mqtt(a.mqtt, a.cars, a.hours, a.seed, a.faults, a.rate, a.drift)
        print(f"published {n} events to {a.mqtt}")
    if not a.out and not a.kafka and not a.mqtt:
        ap.error("give --out, --kafka or --mqtt")


if __name__ == "__main__":
    main()
