"""fp16 builds: which layers leave fp16's range on real data.

An fp16 activation above 65504 becomes inf and then NaN further down; the verify step's zero batch
never shows it. Before an fp16 build, the first dataset images (the calibration choice) run through
the prepared fp32 graph in onnxruntime with every float node output exposed, and each layer whose
largest |value| exceeds FP16_MAX is reported by node name in compile.log, on stderr and in
mod.json. Keeping those layers in fp32 inside an fp16 build is not implemented: the warning says
to build fp32 instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

from deploy.config.build import BuildConfig

FP16_MAX = 65504.0
IMAGES = 4


def _float_outputs(model: onnx.ModelProto) -> list[str]:
    """Node outputs that shape inference types as float32 (shape arithmetic and int tensors are
    left out: onnxruntime refuses a graph output declared with the wrong type)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    floats = {vi.name for vi in [*inferred.graph.value_info, *inferred.graph.output]
              if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return [o for n in model.graph.node for o in n.output if o in floats]


def overflow_layers(cfg: BuildConfig, model: onnx.ModelProto, log) -> list[dict] | None:
    """[{node, tensor, max_abs}] for outputs beyond FP16_MAX on the dataset images; None when the
    YAML names no readable dataset (then nothing was checked, and the log says so)."""
    from deploy.data.readers import select_calibration
    from deploy.preprocess import Preprocessor
    from deploy.quantize.calibrate import check_dataset_shape
    from deploy.quantize.collect import with_outputs
    import onnxruntime as ort

    ds = cfg.dataset
    if ds.path is None or not Path(ds.path).is_dir():
        log("fp16 range: not checked (the build YAML names no dataset folder)")
        return None
    try:
        images = select_calibration(ds.path, ds.suffix, IMAGES, ds.seed)
    except Exception as e:
        log(f"fp16 range: not checked ({e})")
        return None
    pre = Preprocessor.from_process_ops(ds.process_ops)
    feed, _ = check_dataset_shape(cfg, model, pre.load(images[0]))
    names = _float_outputs(model)
    sess = ort.InferenceSession(with_outputs(model, names).SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = [o.name for o in sess.get_outputs()]
    peak = dict.fromkeys(wanted, 0.0)
    for path in images:
        for name, value in zip(wanted, sess.run(wanted, {feed: pre.load(path)[None].astype(np.float32)})):
            if np.issubdtype(value.dtype, np.floating) and value.size:
                peak[name] = max(peak[name], float(np.abs(value).max()))
    producer = {o: n.name or n.op_type for n in model.graph.node for o in n.output}
    over = [{"node": producer.get(t, t), "tensor": t, "max_abs": v} for t, v in peak.items() if v > FP16_MAX]
    log(f"fp16 range: {len(images)} dataset images, {len(wanted)} tensors, {len(over)} beyond ±{FP16_MAX:g}")
    return over


def warn(over: list[dict], log) -> None:
    """The user-facing warning: which layers overflow and what to do about it."""
    if not over:
        return
    shown = ", ".join(f"{o['node']} (max |x| {o['max_abs']:.3g})" for o in over[:8])
    msg = (f"warning: fp16: {len(over)} layer output(s) exceed the fp16 range ±{FP16_MAX:g} on dataset images "
           f"and will become inf/NaN: {shown}{' …' if len(over) > 8 else ''}. Keeping single layers in fp32 "
           f"inside an fp16 build is not implemented; build this model in fp32 (or int8).")
    log(msg)
    print(msg, file=sys.stderr)
