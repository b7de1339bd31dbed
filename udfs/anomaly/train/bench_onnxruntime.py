"""onnxruntime's throughput on the committed models, single thread, at batch sizes 1, 64, 1,024 and
8,192, on the same inputs as tract's benchmark (cargo bench -p eddy-udf-anomaly --bench inference)."""

import os
import time

import numpy as np

from onnx_session import session

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = [90.0, 2400.0, 35.0, 38.0, 91.0, 96.0, 25.0, 14.1, 2.45, 2.45, 2.44, 2.46, 1.4, 20.0]


def rows(n, width):
    """As the Rust benchmark: readings, and for a windowed model small sds after them."""
    base = np.array(BASE + [0.01 * b for b in BASE], dtype=np.float32)[:width]
    i = np.arange(n * width)
    return (base[i % width] * (1 + ((i * 7919) % 100) * 1e-4)).astype(np.float32).reshape(n, width)


def timed(model, x, calls):
    """Seconds for `calls` runs over `x`."""
    started = time.perf_counter()
    for _ in range(calls):
        model.run(["score", "contributions"], {"X": x})
    return time.perf_counter() - started


for name in ["autoencoder", "gaussian", "autoencoder_30s", "gaussian_30s", "gaussian_20s"]:
    model = session(os.path.join(HERE, "..", "models", name, "1", "model.onnx"))
    width = model.get_inputs()[0].shape[1]
    for batch in [1, 64, 1024, 8192]:
        x = rows(batch, width)
        calls = max(200_000 // batch, 200)
        best = min(timed(model, x, calls) for _ in range(3))
        per_row = best / (calls * batch)
        print(f"onnxruntime {name}@1 batch {batch:>5}: {1 / per_row:>12.0f} rows/s, {per_row * 1e6:>8.3f} us/row")
