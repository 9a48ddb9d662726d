"""The engines a benchmark compares: each is a zero-argument callable on a fixed input batch that
returns the model outputs, so the same call is both timed and checked."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

Engine = Callable[[], list]


def ort_engine(onnx_path: Path, x: np.ndarray, threads: int, spinning: bool = True) -> Engine:
    """spinning=False: onnxruntime's threads sleep after a run instead of spinning (its default,
    ~40 ms of a core after each run; timing.interleaved waits that out)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    return lambda: sess.run(None, feed)


def tvm_engine(prefix: Path, x: np.ndarray, threads: int) -> Engine:
    from deploy.runtime import Model
    model = Model(prefix, num_threads=threads)
    return lambda: model.run(x)


def mask_agreement(a: list, b: list, threshold: float = 0.5) -> float:
    """Fraction of identical binarised pixels over all outputs (probabilities)."""
    same = sum(int(((x >= threshold) == (y >= threshold)).sum()) for x, y in zip(a, b))
    return same / sum(x.size for x in a)


def max_abs(a: list, b: list) -> float:
    return max(float(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32)).max()) for x, y in zip(a, b))


def rel_max_abs(ref: list, out: list) -> float:
    """max_abs divided by the reference's largest magnitude when that exceeds 1 (random-weight nets
    can have outputs in the hundreds, where 1e-4 absolute is below fp32 resolution)."""
    scale = max(float(np.abs(np.asarray(r, np.float32)).max()) for r in ref)
    return max_abs(ref, out) / max(1.0, scale)


def label_agreement(a: list, b: list) -> float:
    """Fraction of identical predicted labels over all outputs: the argmax class for multi-class
    logits (N, C, H, W), the logit's sign for one class."""
    def labels(x: np.ndarray) -> np.ndarray:
        return x.argmax(axis=1) if x.ndim == 4 and x.shape[1] > 1 else x > 0
    same = sum(int((labels(x) == labels(y)).sum()) for x, y in zip(a, b))
    return same / sum(labels(x).size for x in a)
