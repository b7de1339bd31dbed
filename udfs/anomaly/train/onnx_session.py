"""An onnxruntime session as the scripts and tests use it: CPU, one thread (so figures are comparable
with tract's single-threaded runs)."""

import onnxruntime as ort


def session(model):
    """`model`: a path to an .onnx file, or serialized model bytes."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
