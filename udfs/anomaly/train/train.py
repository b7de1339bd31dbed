"""Trains the anomaly-detection models on simulated normal driving and writes them, with model cards,
into udfs/anomaly/models/<name>/<version>/:

- autoencoder: a standard scaler and an MLP trained to reproduce its (scaled) input; the anomaly score
  is the mean squared reconstruction error, computed inside the ONNX graph.
- gaussian: the squared Mahalanobis distance from the mean of normal driving (a MatMul with the inverse
  covariance).

Both graphs use standard ONNX ops only (the scaler as Sub/Div, skl2onnx's trailing Reshape removed) so
tract runs them; both also output each sensor's share of the score ("contributions"). A threshold is
chosen on a validation set with faults (another seed) for at most 0.5 false alarms per car-hour.
Reference inputs and onnxruntime's outputs are written beside each model for Eddy's tests.

    pip install -r requirements.txt && python train.py [--version 1] [--seed 1]

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


def finish(graph_nodes, inputs, initializers, name):
    """A model whose outputs are `score` [N] and `contributions` [N, features]."""
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("contributions", TensorProto.FLOAT, ["N", len(telemetry.FEATURES)]),
    ]
    graph = helper.make_graph(graph_nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="eddy-anomaly-train")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def score_nodes(scaled, reconstructed):
    """Squared errors per sensor, and their mean as the score."""
    nodes = [
        helper.make_node("Sub", [scaled, reconstructed], ["error"]),
        helper.make_node("Mul", ["error", "error"], ["contributions"]),
        # Opset 17: axes as an attribute.
        helper.make_node("ReduceMean", ["contributions"], ["score"], axes=[1], keepdims=0),
    ]
    return nodes, []


def autoencoder(x, seed):
    from skl2onnx import to_onnx
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    mlp = MLPRegressor(hidden_layer_sizes=(24, 6, 24), activation="tanh", max_iter=60,
                       batch_size=512, learning_rate_init=2e-3, random_state=seed, tol=1e-6)
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
    extra, consts = score_nodes(scaled, reconstructed)
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", len(telemetry.FEATURES)])]
    used = {i for n in nodes for i in n.input}
    initializers = [t for t in exported.graph.initializer if t.name in used]
    return finish(nodes + extra, inputs, initializers + consts, "autoencoder")


def gaussian(x):
    """Squared Mahalanobis distance d = c P c^T with c = x - mean and P the inverse covariance; sensor i
    contributes c_i (c P)_i, and the contributions add up to d."""
    mean = x.mean(axis=0)
    cov = np.cov((x - mean).T) + 1e-6 * np.eye(x.shape[1])
    precision = np.linalg.inv(cov).astype(np.float32)
    consts = [numpy_helper.from_array(mean.astype(np.float32), "mean"),
              numpy_helper.from_array(precision, "precision")]
    nodes = [
        helper.make_node("Sub", ["X", "mean"], ["centered"]),
        helper.make_node("MatMul", ["centered", "precision"], ["weighted"]),
        helper.make_node("Mul", ["centered", "weighted"], ["contributions"]),
        helper.make_node("ReduceSum", ["contributions", "sum_axes"], ["score"], keepdims=0),
    ]
    consts.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axes"))
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", len(telemetry.FEATURES)])]
    return finish(nodes, inputs, consts, "gaussian")


def scores(model, x):
    return session(model.SerializeToString()).run(["score", "contributions"], {"X": x})


def write(model, name, version, card, reference_x):
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
        json.dump({"inputs": reference_x.round(4).tolist(), "score": score.tolist(),
                   "contributions": contributions.tolist()}, f)
        f.write("\n")
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    train_x = telemetry.arrays(cars=40, hours=2, seed=a.seed, faults=0)[0]
    val_x, val_label, _, val_cars = telemetry.arrays(cars=20, hours=2, seed=a.seed + 100, faults=3)
    car_hours = 20 * 2
    reference_x = val_x[:: len(val_x) // 64][:64].round(4)
    command = f"python train.py --version {a.version} --seed {a.seed}"
    for name, model in [("autoencoder", autoencoder(train_x, a.seed)), ("gaussian", gaussian(train_x))]:
        val_score = scores(model, val_x)[0]
        threshold = threshold_for(val_score, val_label, val_cars, car_hours, max_false_alarms=0.5)
        found = alarms(val_score >= threshold, val_label, val_cars, car_hours)
        card = {
            "name": name,
            "version": a.version,
            "features": telemetry.FEATURES,
            "input": "X: float32 [N, 14], the features in this order, raw units",
            "outputs": {"score": "float32 [N], higher is more anomalous",
                        "contributions": "float32 [N, 14], each sensor's share of the score"},
            "threshold": float(threshold),
            "threshold_rule": "the lowest score threshold with at most 0.5 false alarms per car-hour on the "
                              "validation set (20 cars x 2 h, seed + 100, 3 fault episodes per car on average)",
            "validation": found,
            "training": {"data": f"telemetry.generate(cars=40, hours=2, seed={a.seed}, faults=0)",
                         "command": command},
        }
        folder = write(model, name, a.version, card, reference_x)
        print(f"{name}: threshold {threshold:.4f}, validation {json.dumps(found)} -> {folder}")


if __name__ == "__main__":
    sys.exit(main())
