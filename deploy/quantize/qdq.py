"""QDQ ONNX models from a QuantPlan.

`to_qdq` / `write_qdq`: the "ideal" int8 model — exactly the arithmetic of the TVM int8 path,
runnable and inspectable in any ONNX tool. For every quantized conv:
    x → QuantizeLinear(scale, zp 0, uint8|int8) → DequantizeLinear → Conv
    W stored as int8 → DequantizeLinear(per-channel scale, axis 0 for Conv / 1 for ConvTranspose) → Conv
The bias stays float and nothing is added after the conv (the TVM path computes
conv(x_q, w_q) in int32, multiplies by scale_x * scale_w[c] and adds the float bias). Skipped
convs are untouched. onnxruntime runs this as fake-quant float (no int8 kernels: its QLinearConv
fusion wants a quantized output and an int32 bias): use it for accuracy, not speed.

`ort_quantize_static`: onnxruntime's own `quantize_static` QDQ model (Conv/ConvTranspose only,
the plan's nodes, uint8 activations, int8 weights, per channel as planned), which onnxruntime
does run with int8 kernels — the "onnxruntime int8 (QDQ, same calibration)" benchmark baseline.
With `calibration="plan"` (default) it takes OUR ranges: uint8 tensors get [0, T] (so the same
scale T/255 and zero point 0); signed ones [max(min, -T), min(max, T)], which onnxruntime turns
into asymmetric uint8. With `calibration="entropy"` onnxruntime runs its own KL calibrator on the
same calibration images (keeping all activations in memory).
"""
from __future__ import annotations

import inspect
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploy.errors import DeployError, UnsupportedError
from deploy.io import atomic_save
from deploy.quantize.graph import constants, node_name
from deploy.quantize.planner import QuantPlan
from deploy.quantize.weights import quantize_weight

QDQ_OPSET = 13  # per-axis DequantizeLinear
_NP = {"uint8": np.uint8, "int8": np.int8}


def named_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose unnamed nodes carry the names the plan uses (`<op_type>#<position>`)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for pos, node in enumerate(m.graph.node):
        if not node.name:
            node.name = node_name(node, pos)
    return m


def _opset(m: onnx.ModelProto) -> int:
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 1)


def _at_least_opset_13(m: onnx.ModelProto) -> onnx.ModelProto:
    if _opset(m) >= QDQ_OPSET:
        return m
    from onnx import version_converter
    try:
        return version_converter.convert_version(m, QDQ_OPSET)
    except Exception as e:  # the converter raises plain RuntimeErrors
        raise UnsupportedError(f"QDQ export needs ONNX opset >= {QDQ_OPSET} (per-channel DequantizeLinear); "
                               f"converting this opset-{_opset(m)} model failed: {e}") from e


def to_qdq(model: onnx.ModelProto, plan: QuantPlan) -> onnx.ModelProto:
    """The plan applied to `model` as QuantizeLinear/DequantizeLinear pairs (see the module doc)."""
    m = _at_least_opset_13(named_copy(model))
    g = m.graph
    consts = constants(m)
    taken = {t for n in g.node for t in (*n.input, *n.output)} | {t.name for t in g.initializer} \
        | {i.name for i in g.input} | {n.name for n in g.node}

    def fresh(name: str) -> str:
        out, k = name, 1
        while out in taken:
            out, k = f"{name}_{k}", k + 1
        taken.add(out)
        return out

    missing = set(plan.convs) - {n.name for n in g.node}
    if missing:
        raise DeployError(f"QDQ export: plan nodes {sorted(missing)} are not in the model "
                          "(plan made for another model?)")
    new_inits: list[TensorProto] = []
    done: dict[tuple, str] = {}  # (kind, tensor) → dequantized tensor name
    nodes: list[onnx.NodeProto] = []
    replaced_weights: set[str] = set()
    for node in g.node:
        cq = plan.convs.get(node.name)
        if cq is not None:
            x = cq.input
            if ("act", x) not in done:
                a = plan.activations[x]
                s, z = fresh(f"{x}_scale"), fresh(f"{x}_zero_point")
                new_inits += [numpy_helper.from_array(np.array(a.scale, np.float32), s),
                              numpy_helper.from_array(np.array(a.zero_point, _NP[a.dtype]), z)]
                xq, xd = fresh(f"{x}_quantized"), fresh(f"{x}_dequantized")
                nodes += [helper.make_node("QuantizeLinear", [x, s, z], [xq], name=fresh(f"{x}_QuantizeLinear")),
                          helper.make_node("DequantizeLinear", [xq, s, z], [xd], name=fresh(f"{x}_DequantizeLinear"))]
                done[("act", x)] = xd
            w = cq.weight
            if ("w", w, cq.weight_axis) not in done:
                if w not in consts:
                    raise DeployError(f"QDQ export: weight {w!r} of {node.name} is not a constant")
                wq_arr = quantize_weight(consts[w], cq.weight_scale, cq.weight_axis)
                wq, s, z, wd = (fresh(f"{w}_quantized"), fresh(f"{w}_scale"), fresh(f"{w}_zero_point"),
                                fresh(f"{w}_dequantized"))
                new_inits += [numpy_helper.from_array(wq_arr, wq),
                              numpy_helper.from_array(cq.weight_scale.astype(np.float32), s),
                              numpy_helper.from_array(np.zeros(cq.weight_scale.shape, np.int8), z)]
                attrs = {} if cq.weight_axis is None else {"axis": cq.weight_axis}
                nodes.append(helper.make_node("DequantizeLinear", [wq, s, z], [wd], name=fresh(f"{w}_DequantizeLinear"),
                                              **attrs))
                done[("w", w, cq.weight_axis)] = wd
                replaced_weights.add(w)
            node.input[0] = done[("act", x)]
            node.input[1] = done[("w", w, cq.weight_axis)]
        nodes.append(node)
    still_used = {t for n in nodes for t in n.input} | {o.name for o in g.output}
    kept_inits = [t for t in g.initializer if t.name not in replaced_weights or t.name in still_used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(kept_inits + new_inits)
    meta = {p.key: p for p in m.metadata_props}
    info = {"calibrate_mode": plan.calibrate_mode, "num_images": plan.num_images,
            "images_sha256": plan.images_sha256, "per_channel": plan.per_channel,
            "weight_scale": plan.weight_scale_mode, "skipped": plan.skipped}
    if "quantization" in meta:
        meta["quantization"].value = json.dumps(info)
    else:
        m.metadata_props.append(onnx.StringStringEntryProto(key="quantization", value=json.dumps(info)))
    return m


def write_qdq(model: onnx.ModelProto, plan: QuantPlan, out_path: str | Path) -> Path:
    """`to_qdq` saved to `out_path` (atomically) after onnx.checker."""
    m = to_qdq(model, plan)
    onnx.checker.check_model(m)
    return atomic_save(out_path, lambda tmp: onnx.save(m, str(tmp)))


def ort_ranges(plan: QuantPlan) -> dict[str, tuple[float, float]]:
    """(lowest, highest) per activation tensor as handed to onnxruntime (see the module doc)."""
    out = {}
    for t, a in plan.activations.items():
        if a.dtype == "uint8":
            out[t] = (0.0, a.threshold)
        else:
            out[t] = (max(a.min, -a.threshold), min(a.max, a.threshold))
    return out


class _ImageReader:
    """onnxruntime CalibrationDataReader over preprocessed calibration images (one per call)."""

    def __init__(self, input_name: str, images: list[Path], load):
        self.input_name, self.images, self.load, self.i = input_name, images, load, 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        x = self.load(self.images[self.i])[None]
        self.i += 1
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def ort_quantize_static(model: onnx.ModelProto, plan: QuantPlan, out_path: str | Path, *,
                        calibration: str = "plan", cfg=None) -> Path:
    """onnxruntime's quantize_static QDQ model of the plan's convs (see the module doc).

    `calibration`: "plan" (our ranges) or "entropy" (onnxruntime's KL calibrator on plan.images,
    preprocessed as `cfg.dataset.process_ops`; needs `cfg`).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    if calibration not in ("plan", "entropy"):
        raise ValueError(f"calibration must be 'plan' or 'entropy', got {calibration!r}")
    m = named_copy(model)
    common = dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv", "ConvTranspose"],
                  nodes_to_quantize=plan.quantized, per_channel=plan.per_channel,
                  activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="segdeploy-ortq-") as tmp:
        if calibration == "plan":
            if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
                raise UnsupportedError("onnxruntime's quantize_static here has no calibration_cache_path: "
                                       "upgrade onnxruntime (>= 1.31) to hand it our calibration ranges")
            data = {t: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                    for t, (lo, hi) in ort_ranges(plan).items()}
            cache_file = Path(tmp) / "ranges.json"
            save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache_file)
            quantize_static(m, str(out_path), None, calibrate_method=CalibrationMethod.MinMax,
                            calibration_cache_path=str(cache_file), **common)
        else:
            if cfg is None:
                raise ValueError("calibration='entropy' needs cfg (for the preprocessing ops)")
            from deploy.preprocess import Preprocessor
            from deploy.quantize.graph import single_input

            name, _ = single_input(m)
            reader = _ImageReader(name, plan.images, Preprocessor.from_process_ops(cfg.dataset.process_ops).load)
            quantize_static(m, str(out_path), reader, calibrate_method=CalibrationMethod.Entropy, **common)
    return out_path
