"""The online baseline, as the anomaly plugin's ONLINE_ANOMALY aggregate computes it (udfs/anomaly/src/
online.rs), for evaluating and tuning it offline: per key, an exponentially forgetting mean and
covariance of the features; each row is scored against the key's baseline before the row is folded in,
as the squared Mahalanobis distance divided by the number of features. A row is not scored until the
baseline has learned `warmup` rows, and a row that alerts is learned with little weight (a fault does not
become normal while it lasts; a lasting change does, slowly).

    python online.py [--half-life 360] [--warmup 60] [--threshold 4] [--advance 10]
"""

import argparse

import numpy as np

SD_FLOOR = 1e-3
# The covariance is shrunk this far towards its diagonal, and every variance is at least MIN_VARIANCE,
# so a baseline of few rows (or a feature that has not moved yet) still inverts.
SHRINK = 0.05
MIN_VARIANCE = 1e-6
# A row that is an anomaly is learned with this weight (a normal row's is 1).
ALERT_WEIGHT = 0.03


class Baseline:
    def __init__(self, width, half_life, warmup, threshold, context=0):
        self.context = context
        self.keep = 0.5 ** (1.0 / half_life)
        self.warmup, self.threshold = warmup, threshold
        self.rows, self.weight = 0, 0.0
        self.mean = np.zeros(width)
        self.scatter = np.zeros((width, width))

    def score(self, x):
        """The row's score against the baseline, NaN while it warms up."""
        if self.rows < self.warmup:
            return float("nan")
        cov = self.scatter / self.weight
        cov = (1 - SHRINK) * cov + SHRINK * np.diag(np.diag(cov))
        cov[np.diag_indices_from(cov)] = np.maximum(np.diag(cov), MIN_VARIANCE)
        centered = x - self.mean
        d = float(centered @ np.linalg.solve(cov, centered))
        k = self.context
        if k:
            d -= float(centered[:k] @ np.linalg.solve(cov[:k, :k], centered[:k]))
        return d / (len(x) - k)

    def learn(self, x, w=1.0):
        self.rows += 1
        self.weight = self.keep * self.weight + w
        before = x - self.mean
        self.mean = self.mean + before * (w / self.weight)
        self.scatter = self.keep * self.scatter + w * np.outer(before, x - self.mean)

    def update(self, x):
        """Scores `x`, then learns it (an anomaly with little weight)."""
        s = self.score(x)
        self.learn(x, ALERT_WEIGHT if s >= self.threshold else 1.0)
        return s


def log_sd(x):
    """The windows' features as the SQL of car-alerts.sql passes them: means, then LN(sd + 0.001)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], np.log(x[:, half:] + SD_FLOOR)], axis=1)


def scores(x, car, half_life, warmup, threshold, context=0):
    """Every row's score, each car's rows in order through its own baseline."""
    out = np.full(len(x), np.nan)
    baselines = {}
    for i in range(len(x)):
        b = baselines.setdefault(car[i], Baseline(x.shape[1], half_life, warmup, threshold, context))
        out[i] = b.update(x[i])
    return out


def main():
    import telemetry
    from metrics import alarms
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--half-life", type=float, default=360)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--threshold", type=float, default=4.0)
    ap.add_argument("--advance", type=int, default=10)
    ap.add_argument("--cars", type=int, default=30)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    w = telemetry.windows(a.cars, a.hours, a.seed, 3.0, advance_s=a.advance)
    s = scores(log_sd(w.features), w.car, a.half_life, a.warmup, a.threshold)
    alert = s >= a.threshold
    print(alarms(alert, w.label, w.car, a.cars * a.hours, step=a.advance, timing=(w.end_s, w.onset_s)))


if __name__ == "__main__":
    main()
