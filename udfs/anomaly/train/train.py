"""Trains the anomaly-detection models on simulated normal driving and writes them, with model cards,
into udfs/anomaly/models/<name>/<version>/:

- autoencoder: a standard scaler and an MLP trained to reproduce its (scaled) input; the anomaly score
  is the mean squared reconstruction error, computed inside the ONNX graph.
- gaussian: the squared Mahalanobis distance from the mean of normal driving (a MatMul with the inverse
  covariance).
- autoencoder_30s, gaussian_30s: the same over 30-second windows of each car (every sensor's AVG and
  STDDEV_POP, computed in SQL; the graph takes log(sd + 0.001) itself), which sees what single readings
  cannot: a stuck sensor (sd 0), a short spike (a large sd), a slow drift (a moved mean, less noisy).
- gaussian_20s: the Gaussian over 20-second windows every 5 seconds (a window ends every 5 s, so faults
  are found sooner); from --version 2 on, one Gaussian per engine regime (cold, warm).

Both graphs use standard ONNX ops only (the scaler as Sub/Div, skl2onnx's trailing Reshape removed) so
tract runs them; both also output each sensor's share of the score ("contributions"). A threshold is
chosen on a validation set with faults (another seed) for at most 0.5 false alarms per car-hour.
Reference inputs and onnxruntime's outputs are written beside each model for Eddy's tests.

    pip install -r requirements.txt && python train.py [--version 1] [--seed 1] [--only gaussian_20s]

The same seed reproduces the same models, byte for byte.
"""

import argparse
import hashlib
import json
import os
import sys
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import telemetry  # noqa: E402
from onnx_session import session  # noqa: E402
from metrics import alarms, threshold_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "models")
OPSET = 17


def finish(graph_nodes, initializers, name, width):
    """A model with input `X` [N, width] and outputs `score` [N] and `contributions` [N, width]."""
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", width])]
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("contributions", TensorProto.FLOAT, ["N", width]),
    ]
    graph = helper.make_graph(graph_nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="eddy-anomaly-train")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def row_sum(values, output, width, weight=1.0):
    """`output` = each row of `values` summed, times `weight`: a MatMul with a constant vector, which
    tract runs faster than ReduceSum/ReduceMean (0.342 -> 0.312 us per row for the autoencoder at batch
    64)."""
    name = f"{output}_weights"
    const = numpy_helper.from_array(np.full((width,), weight, dtype=np.float32), name)
    return helper.make_node("MatMul", [values, name], [output]), const


def score_nodes(scaled, reconstructed, width):
    """Squared errors per feature, and their mean as the score."""
    mean, weights = row_sum("contributions", "score", width, 1.0 / width)
    nodes = [
        helper.make_node("Sub", [scaled, reconstructed], ["error"]),
        helper.make_node("Mul", ["error", "error"], ["contributions"]),
        mean,
    ]
    return nodes, [weights]


SD_FLOOR = 1e-3


def log_sd(x):
    """What the windowed graphs do to their input first: the sds (second half) become log(sd + floor)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], np.log(x[:, half:] + SD_FLOOR)], axis=1).astype(np.float32)


def log_sd_nodes(width):
    """Nodes computing `features` = log_sd(X), and their constants."""
    half = width // 2
    consts = [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in
              [("zero", [0]), ("half", [half]), ("width", [width]), ("columns", [1])]]
    consts.append(numpy_helper.from_array(np.array(SD_FLOOR, dtype=np.float32), "sd_floor"))
    nodes = [
        helper.make_node("Slice", ["X", "zero", "half", "columns"], ["means"]),
        helper.make_node("Slice", ["X", "half", "width", "columns"], ["sds"]),
        helper.make_node("Add", ["sds", "sd_floor"], ["floored"]),
        helper.make_node("Log", ["floored"], ["log_sds"]),
        helper.make_node("Concat", ["means", "log_sds"], ["features"], axis=1),
    ]
    return nodes, consts


def renamed_input(nodes, new):
    """The nodes reading `X` read `new` instead."""
    for n in nodes:
        for i, name in enumerate(n.input):
            if name == "X":
                n.input[i] = new
    return nodes


def autoencoder(x, seed, hidden=(24, 6, 24), max_iter=60, batch_size=512, windowed=False):
    from skl2onnx import to_onnx
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if windowed:
        x = log_sd(x)
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    mlp = MLPRegressor(hidden_layer_sizes=hidden, activation="tanh", max_iter=max_iter,
                       batch_size=batch_size, learning_rate_init=2e-3, random_state=seed, tol=1e-6)
    with warnings.catch_warnings():
        # Training stops at max_iter on purpose (the same number of epochs every run).
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(xs, xs)
    pipeline = make_pipeline(scaler, mlp)
    exported = to_onnx(pipeline, x[:1], options={StandardScaler: {"div": "div"}}, target_opset=OPSET)
    nodes = list(exported.graph.node)
    # tract does not need skl2onnx's final Reshape (and stumbles on it): read the last Add directly.
    assert nodes[-1].op_type == "Reshape", [n.op_type for n in nodes]
    reconstructed = nodes[-1].input[0]
    nodes = nodes[:-1]
    scaled = next(n.output[0] for n in nodes if n.op_type == "Div")
    extra, consts = score_nodes(scaled, reconstructed, x.shape[1])
    if windowed:
        prefix, prefix_consts = log_sd_nodes(x.shape[1])
        nodes = prefix + renamed_input(nodes, "features")
        consts += prefix_consts
    used = {i for n in nodes for i in n.input}
    initializers = [t for t in exported.graph.initializer if t.name in used]
    name = "autoencoder_30s" if windowed else "autoencoder"
    return finish(nodes + extra, initializers + consts, name, x.shape[1])


def gaussian(x, windowed=False, name=None):
    """Squared Mahalanobis distance d = c P c^T with c = x - mean and P the inverse covariance; feature i
    contributes c_i (c P)_i, and the contributions add up to d."""
    prefix, consts = log_sd_nodes(x.shape[1]) if windowed else ([], [])
    if windowed:
        x = log_sd(x)
    mean = x.mean(axis=0)
    cov = np.cov((x - mean).T) + 1e-6 * np.eye(x.shape[1])
    precision = np.linalg.inv(cov).astype(np.float32)
    consts += [numpy_helper.from_array(mean.astype(np.float32), "mean"),
               numpy_helper.from_array(precision, "precision")]
    total, weights = row_sum("contributions", "score", x.shape[1])
    nodes = prefix + [
        helper.make_node("Sub", ["features" if windowed else "X", "mean"], ["centered"]),
        helper.make_node("MatMul", ["centered", "precision"], ["weighted"]),
        helper.make_node("Mul", ["centered", "weighted"], ["contributions"]),
        total,
    ]
    consts.append(weights)
    return finish(nodes, consts, name or ("gaussian_30s" if windowed else "gaussian"), x.shape[1])


# Version 2 of gaussian_20s: one Gaussian per engine regime, the cold engine's (a window whose mean
# coolant temperature is below COLD_BELOW_C) apart from the warm engine's, so a cold start is scored
# against cold starts rather than against warm driving.
REGIME_FEATURE, COLD_BELOW_C = "coolant_c_avg", 70.0


def gaussian_regimes(x, name):
    """Windowed features scored by the Gaussian of their regime: d = c P c^T with c = x - mean and P of
    the warm engine, or of the cold one when X[:, REGIME_FEATURE] < COLD_BELOW_C."""
    prefix, consts = log_sd_nodes(x.shape[1])
    column = telemetry.WINDOW_FEATURES.index(REGIME_FEATURE)
    cold = x[:, column] < COLD_BELOW_C
    z = log_sd(x)
    nodes = list(prefix)
    for regime, rows in (("warm", ~cold), ("cold", cold)):
        mean = z[rows].mean(axis=0)
        cov = np.cov((z[rows] - mean).T) + 1e-6 * np.eye(x.shape[1])
        consts += [numpy_helper.from_array(mean.astype(np.float32), f"{regime}_mean"),
                   numpy_helper.from_array(np.linalg.inv(cov).astype(np.float32), f"{regime}_precision")]
        nodes += [
            helper.make_node("Sub", ["features", f"{regime}_mean"], [f"{regime}_centered"]),
            helper.make_node("MatMul", [f"{regime}_centered", f"{regime}_precision"], [f"{regime}_weighted"]),
            helper.make_node("Mul", [f"{regime}_centered", f"{regime}_weighted"], [f"{regime}_contributions"]),
        ]
    consts += [numpy_helper.from_array(np.array([column], dtype=np.int64), "regime_start"),
               numpy_helper.from_array(np.array([column + 1], dtype=np.int64), "regime_end"),
               numpy_helper.from_array(np.array(COLD_BELOW_C, dtype=np.float32), "cold_below")]
    total, weights = row_sum("contributions", "score", x.shape[1])
    nodes += [
        helper.make_node("Slice", ["X", "regime_start", "regime_end", "columns"], ["regime_value"]),
        helper.make_node("Less", ["regime_value", "cold_below"], ["is_cold"]),
        helper.make_node("Where", ["is_cold", "cold_contributions", "warm_contributions"], ["contributions"]),
        total,
    ]
    consts.append(weights)
    return finish(nodes, consts, name, x.shape[1])


def scores(model, x):
    return session(model.SerializeToString()).run(["score", "contributions"], {"X": x})


def write(model, name, version, card, reference_x, decimals):
    folder = os.path.join(MODELS, name, str(version))
    os.makedirs(folder, exist_ok=True)
    data = model.SerializeToString()
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(data)
    card["sha256"] = hashlib.sha256(data).hexdigest()
    with open(os.path.join(folder, "card.json"), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    score, contributions = scores(model, reference_x)
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump({"inputs": reference_x.round(decimals).tolist(), "score": score.tolist(),
                   "contributions": contributions.tolist()}, f)
        f.write("\n")
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="train only this model (by name)")
    a = ap.parse_args()
    car_hours = 20 * 2
    # Each kind of input: how it is made from readings (window size and advance in seconds), and the
    # false alarms per car-hour its threshold allows on the validation set.
    kinds = {"event": (None, None, 0.5), "window": (telemetry.WINDOW_S, None, 0.5), "hop": (20, 5, 0.3)}

    def data(kind, cars, seed, faults):
        size, advance, _ = kinds[kind]
        if size is None:
            x, label, _, car = telemetry.arrays(cars=cars, hours=2, seed=seed, faults=faults)
            return x, label, car, None
        w = telemetry.windows(cars=cars, hours=2, seed=seed, faults=faults, window_s=size, advance_s=advance)
        return w.features, w.label, w.car, (w.end_s, w.onset_s)

    command = f"python train.py --version {a.version} --seed {a.seed}"
    makers = [
        ("event", "autoencoder", lambda x: autoencoder(x, a.seed)),
        ("event", "gaussian", gaussian),
        ("window", "autoencoder_30s", lambda x: autoencoder(x, a.seed, hidden=(24, 6, 24), max_iter=200,
                                                            batch_size=256, windowed=True)),
        ("window", "gaussian_30s", lambda x: gaussian(x, windowed=True)),
        ("hop", "gaussian_20s", lambda x: gaussian(x, windowed=True, name="gaussian_20s") if a.version == 1
         else gaussian_regimes(x, "gaussian_20s")),
    ]
    for kind, name, make in makers:
        if a.only and a.only != name:
            continue
        model = make(data(kind, 40, a.seed, 0)[0])
        windowed = kind != "event"
        size, advance, max_false_alarms = kinds[kind]
        step = (advance or size) if windowed else 1
        features, decimals = (telemetry.WINDOW_FEATURES, 6) if windowed else (telemetry.FEATURES, 4)
        val_x, val_label, val_cars, timing = data(kind, 20, a.seed + 100, 3)
        val_x = val_x.astype(np.float32)
        reference_x = val_x[:: len(val_x) // 64][:64].round(decimals)
        val_score = scores(model, val_x)[0]
        threshold = threshold_for(val_score, val_label, val_cars, car_hours, max_false_alarms, step=step)
        found = alarms(val_score >= threshold, val_label, val_cars, car_hours, step=step, timing=timing)
        width = len(features)
        card = {
            "name": name,
            "version": a.version,
            "features": features,
            "input": f"X: float32 [N, {width}], the features in this order, raw units",
            "outputs": {"score": "float32 [N], higher is more anomalous",
                        "contributions": f"float32 [N, {width}], each feature's share of the score"
                        if windowed else "float32 [N, 14], each sensor's share of the score"},
            "threshold": float(threshold),
            "threshold_rule": f"the lowest score threshold with at most {max_false_alarms} false alarms per "
                              "car-hour on the validation set (20 cars x 2 h, seed + 100, 3 fault episodes per car "
                              "on average)",
            "validation": found,
            "training": {"data": f"telemetry.{'windows' if windowed else 'generate'}(cars=40, hours=2, "
                                 f"seed={a.seed}, faults=0{f', window_s={size}' if windowed else ''}"
                                 f"{f', advance_s={advance}' if advance else ''})",
                         "command": command},
        }
        if windowed and name == "gaussian_20s" and a.version > 1:
            card["regimes"] = {"feature": REGIME_FEATURE, "cold_below": COLD_BELOW_C,
                               "model": "one Gaussian for windows of a cold engine, one for a warm engine"}
        if windowed:
            card["window"] = {
                "type": "HOPPING" if advance else "TUMBLING", "size_seconds": size,
                "features": "per car and window: AVG(sensor) for each sensor, then STDDEV_POP(sensor) for each",
            }
            if advance:
                card["window"]["advance_seconds"] = advance
        folder = write(model, name, a.version, card, reference_x, decimals)
        print(f"{name}: threshold {threshold:.4f}, validation {json.dumps(found)} -> {folder}")


if __name__ == "__main__":
    sys.exit(main())
