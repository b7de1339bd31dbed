"""Detection quality of an alert stream against labelled fault episodes.

An alarm is a run of alerts of one car with gaps of at most MERGE_S seconds; a false alarm is an alarm
that starts outside every fault episode. An episode is detected when at least one of its rows alerts;
its delay is the seconds from its start to its first alert. Rows are one car's seconds (or windows of
`step` seconds apart) in order, cars one after another (as telemetry.generate and telemetry.windows give
them). A window's alert counts from the window's end.
"""

import numpy as np

MERGE_S = 60


def episodes(label, cars):
    """(start, end) row ranges of the runs of label 1 within each car."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], label.astype(np.int8), [0]])) != 0)
    runs = list(zip(edges[::2], edges[1::2]))
    # A run never spans two cars: each car's episodes start after its first 20 minutes.
    return [(s, e) for s, e in runs if cars[s] == cars[e - 1]]


def false_alarms(alert, label, cars, step=1):
    """The number of alarms that start outside fault episodes."""
    rows = np.flatnonzero(alert)
    if len(rows) == 0:
        return 0
    new_alarm = np.ones(len(rows), dtype=bool)
    new_alarm[1:] = (np.diff(rows) * step > MERGE_S) | (cars[rows[1:]] != cars[rows[:-1]])
    starts = rows[new_alarm]
    return int((label[starts] == 0).sum())


def roc_auc(score, label):
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    positives = label == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def alarms(alert, label, cars, car_hours, score=None, step=1, timing=None):
    """Precision, recall and F1 per event and per episode, false alarms per car-hour, median delay.
    Rows are `step` seconds apart; for windows, `timing` is (end_s, onset_s) per row (telemetry.Windows):
    a delay is from the episode's first labelled second to the end of the first window that alerts."""
    tp = int((alert & (label == 1)).sum())
    fp = int((alert & (label == 0)).sum())
    fn = int((~alert & (label == 1)).sum())
    eps = episodes(label, cars)
    detected = [s for s, e in eps if alert[s:e].any()]
    if timing is None:
        delays = [int(np.flatnonzero(alert[s:e])[0]) * step for s, e in eps if alert[s:e].any()]
    else:
        end_s, onset_s = timing
        delays = [int(end_s[s + np.flatnonzero(alert[s:e])[0]] - onset_s[s]) for s, e in eps if alert[s:e].any()]
    fa = false_alarms(alert, label, cars, step)

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r else 0.0

    p_event = tp / (tp + fp) if tp + fp else 0.0
    r_event = tp / (tp + fn) if tp + fn else 0.0
    r_episode = len(detected) / len(eps) if eps else float("nan")
    # Per episode: of the alarms, those that fall in an episode.
    p_episode = len(detected) / (len(detected) + fa) if detected or fa else 0.0
    out = {
        "event_precision": round(p_event, 4), "event_recall": round(r_event, 4),
        "event_f1": round(f1(p_event, r_event), 4),
        "episode_precision": round(p_episode, 4), "episode_recall": round(r_episode, 4),
        "episode_f1": round(f1(p_episode, r_episode), 4),
        "episodes": len(eps), "detected": len(detected),
        "false_alarms_per_car_hour": round(fa / car_hours, 4),
        "median_delay_s": float(np.median(delays)) if delays else None,
    }
    if score is not None:
        out["roc_auc"] = round(roc_auc(score, label), 4)
    return out


def threshold_for(score, label, cars, car_hours, max_false_alarms, step=1):
    """The lowest threshold (among the normal events' scores) with at most `max_false_alarms` false
    alarms per car-hour."""
    candidates = np.unique(score[label == 0])
    lo, hi = 0, len(candidates) - 1
    # False alarms fall as the threshold rises; find the first candidate that is low enough.
    while lo < hi:
        mid = (lo + hi) // 2
        if false_alarms(score >= candidates[mid], label, cars, step) / car_hours <= max_false_alarms:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])
