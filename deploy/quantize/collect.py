"""Activation statistics: run the fp32 ONNX in onnxruntime with the tensors of interest added as
extra graph outputs, batch by batch, folding each batch into one StreamingHistogram per tensor.

The calibration set runs twice: pass 1 finds each tensor's range, pass 2 bins every value with it,
so the histograms are exactly the one-shot histograms the threshold searches assume (see
deploy.quantize.histogram). Nothing but the current batch and the fixed-size histograms is held,
so memory does not grow with the number of calibration images.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper
from tqdm import tqdm

from deploy.errors import DeployError
from deploy.quantize.histogram import StreamingHistogram


def with_outputs(model: onnx.ModelProto, tensors: Iterable[str]) -> onnx.ModelProto:
    """A copy of `model` that also outputs `tensors` (graph inputs and existing outputs excepted)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    skip = {o.name for o in m.graph.output} | {i.name for i in m.graph.input}
    for name in tensors:
        if name not in skip:
            m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
            skip.add(name)
    return m


def collect_histograms(model: onnx.ModelProto, input_name: str,
                       batches: Callable[[], Iterable[tuple[np.ndarray, int]]], tensors: list[str],
                       num_bins: int = 2048, total: int | None = None,
                       progress: bool = True) -> dict[str, StreamingHistogram]:
    """Histogram every tensor in `tensors` over all batches, in two passes.

    `batches()` yields `(x, n)`, the same batches on each call: an NCHW float32 batch whose first
    `n` rows are real (the rest pad a model with a fixed batch size and are left out of the
    statistics). `total` sizes the progress bar (images).
    """
    import onnxruntime as ort

    tensors = list(dict.fromkeys(tensors))
    augmented = with_outputs(model, tensors)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(augmented.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise DeployError(f"onnxruntime cannot load the model for calibration: {e}") from e
    outputs = [o.name for o in sess.get_outputs()]
    fetch = [t for t in tensors if t != input_name]
    missing = set(fetch) - set(outputs)
    if missing:
        raise DeployError(f"onnxruntime does not expose tensors {sorted(missing)} for calibration")
    hists = {t: StreamingHistogram(num_bins) for t in tensors}
    for step in ("observe", "add"):
        with tqdm(total=total, desc=f"calibrating ({'range' if step == 'observe' else 'histograms'})",
                  unit="img", disable=not progress, leave=False) as bar:
            for x, n in batches():
                values = sess.run(fetch, {input_name: x})
                for name, v in zip([input_name] + fetch, [x] + values):
                    if name not in hists:
                        continue
                    try:
                        getattr(hists[name], step)(v[:n])
                    except ValueError as e:
                        raise DeployError(f"calibration: tensor {name!r} has {e}") from e
                bar.update(n)
    return hists
