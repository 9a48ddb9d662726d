"""`plan()`: which convolutions run in int8 and with which scales — the one int8 decision the
compiler and the QDQ writer both follow.

Activations are per tensor, zero point 0: uint8 with scale T/255 where the calibrated min is
>= 0 (post-ReLU inputs), else int8 with scale T/127 (T: the calibrated threshold). Weights are
symmetric int8, per output channel (quantize_per_channel) or per tensor (deploy.quantize.weights).

Which convs stay in float (skip_dtype), each with its reason, checked in this order:
- not quantizable: the weight is not a constant, or the conv is not 2-D;
- `skip_conv_layers`: 0-based indices among the `Conv` nodes in graph order (ConvTranspose is not
  counted), as TVM's relay.quantize counted conv2d; an index out of range is a ConfigError;
- `skip_nodes`: a node name, or a regular expression matched against the whole name
  (unnamed nodes are `<op_type>#<position>`, see deploy.quantize.graph);
- `skip_op_types`: ONNX op types (e.g. ConvTranspose);
- `keep_edge_convs` (default on): the first conv, when it has 3 input channels (the image), and
  every conv with 1 output channel (the prediction head) — both are cheap and precision-critical.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from deploy.config.build import BuildConfig, Quantize
from deploy.errors import ConfigError
from deploy.io import sha256_files
from deploy.quantize import cache
from deploy.quantize.calibrate import TensorRange, calibrate, calibration_images, calibration_tensors, settings_key
from deploy.quantize.graph import ConvNode, constants, conv_nodes
from deploy.quantize.weights import WEIGHT_AXIS, weight_scale

UINT8, INT8 = "uint8", "int8"


class QuantizeWarning(UserWarning):
    """A quantization setting that had no effect (e.g. a skip_nodes pattern matching no node)."""


@dataclass(frozen=True)
class ActivationQuant:
    """Per-tensor activation quantization: x ≈ scale * (q - zero_point)."""
    tensor: str
    dtype: str          # "uint8" (calibrated min >= 0) or "int8" (symmetric)
    scale: float
    zero_point: int     # always 0
    threshold: float    # clipping threshold T: scale = T/255 (uint8) or T/127 (int8)
    min: float          # calibrated min / max (raw, signed)
    max: float


@dataclass(frozen=True)
class ConvQuant:
    """One quantized conv: its tensors and its weight scales."""
    node: str
    op_type: str
    input: str                # activation tensor; plan.activations[input]
    output: str               # plan.activations[output] holds its calibrated range too
    weight: str               # initializer / Constant output holding the float weight
    weight_scale: np.ndarray  # float32, shape (C_out,) per channel or () per tensor
    weight_axis: int | None   # axis of the weight the scales run along; None = per tensor


@dataclass
class QuantPlan:
    calibrate_mode: str
    activations: dict[str, ActivationQuant]  # tensor name → quantization (conv inputs and outputs)
    convs: dict[str, ConvQuant]              # quantized conv nodes, graph order
    skipped: dict[str, str]                  # conv node → why it stays in float, graph order
    skip_dtype: str                          # what skipped convs run in (fp32 / fp16)
    per_channel: bool
    weight_scale_mode: str                   # "max" or "power2"
    images: list[Path]                       # the calibration images, sorted
    images_sha256: str
    model_sha256: str
    from_cache: bool = False
    cache_path: Path | None = None
    settings: dict = field(default_factory=dict)

    @property
    def quantized(self) -> list[str]:
        return list(self.convs)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def input_quant(self, node: str) -> ActivationQuant:
        return self.activations[self.convs[node].input]

    def to_dict(self) -> dict:
        """JSON-ready summary (for mod.json / compile.log)."""
        return {
            "calibrate_mode": self.calibrate_mode, "num_images": self.num_images,
            "images_sha256": self.images_sha256, "model_sha256": self.model_sha256,
            "per_channel": self.per_channel, "weight_scale": self.weight_scale_mode,
            "skip_dtype": self.skip_dtype, "from_cache": self.from_cache,
            "quantized": self.quantized, "skipped": dict(self.skipped),
            "activations": {t: {"dtype": a.dtype, "scale": a.scale, "zero_point": a.zero_point,
                                "threshold": a.threshold} for t, a in self.activations.items()},
        }

    def summary(self) -> str:
        lines = [f"int8 plan: {len(self.convs)} convs quantized, {len(self.skipped)} kept in {self.skip_dtype}; "
                 f"{self.calibrate_mode} calibration on {self.num_images} images"
                 f"{' (cached)' if self.from_cache else ''}"]
        lines += [f"  float: {n}: {r}" for n, r in self.skipped.items()]
        return "\n".join(lines)


def activation_quant(tensor: str, r: TensorRange) -> ActivationQuant:
    t = r.threshold if r.threshold > 0 else 1.0  # an all-zero tensor: any scale is exact
    if r.unsigned:
        return ActivationQuant(tensor, UINT8, t / 255.0, 0, r.threshold, r.min, r.max)
    return ActivationQuant(tensor, INT8, t / 127.0, 0, r.threshold, r.min, r.max)


def resolve_skips(convs: list[ConvNode], q: Quantize, keep_edge_convs: bool = True,
                  source: Path | str = "build file") -> dict[str, str]:
    """conv node name → reason it stays in float (see the module docstring for the rules)."""
    n_conv = sum(c.conv_index is not None for c in convs)
    for i in q.skip_conv_layers:
        if not 0 <= i < n_conv:
            raise ConfigError(f"{source}: backend.quantize.skip_conv_layers: index {i} is out of range; the model "
                              f"has {n_conv} Conv nodes (0-based indices 0..{n_conv - 1}, graph order)")
    patterns = [(p, re.compile(p)) for p in q.skip_nodes]
    used: set[str] = set()
    skipped = {}
    for k, c in enumerate(convs):
        reason = None
        if c.weight_shape is None:
            reason = f"weight {c.weight!r} is not a constant"
        elif not c.is_2d:
            reason = f"not a 2-D convolution (weight shape {list(c.weight_shape)})"
        elif c.conv_index is not None and c.conv_index in q.skip_conv_layers:
            reason = f"skip_conv_layers: index {c.conv_index}"
        else:
            hit = next((p for p, rx in patterns if c.name == p or rx.fullmatch(c.name)), None)
            if hit is not None:
                used.add(hit)
                reason = f"skip_nodes: {hit!r}"
        if reason is None and c.op_type in q.skip_op_types:
            reason = f"skip_op_types: {c.op_type}"
        if reason is None and keep_edge_convs:
            if k == 0 and c.in_channels == 3:
                reason = "first conv, 3 input channels (image input)"
            elif c.out_channels == 1:
                reason = "1 output channel (prediction head)"
        if reason is not None:
            skipped[c.name] = reason
    for p in q.skip_nodes:
        if p not in used:
            warnings.warn(f"{source}: backend.quantize.skip_nodes: {p!r} matches no Conv/ConvTranspose node",
                          QuantizeWarning, stacklevel=3)
    return skipped


def plan(cfg: BuildConfig, model: onnx.ModelProto, cache_dir: Path, recalibrate: bool = False, *,
         keep_edge_convs: bool = True, progress: bool = True) -> QuantPlan:
    """Calibrate (or reuse `cache_dir/calibration.json`) and decide every conv's int8 scales."""
    q = cfg.backend.quantize
    images = calibration_images(cfg)
    entries = cache.image_entries(images, cfg.dataset.path)
    key = {"format": cache.FORMAT, "model_sha256": cache.model_sha256(model),
           "images_sha256": sha256_files(images), "settings": settings_key(cfg)}
    tensors = calibration_tensors(model)
    ranges = None if recalibrate else cache.load(cache_dir, key, tensors)
    from_cache = ranges is not None
    if ranges is None:
        ranges = calibrate(cfg, model, images, tensors, progress=progress)
        cache.save(cache_dir, key, entries, ranges)

    consts = constants(model)
    convs = conv_nodes(model, consts)
    skipped = resolve_skips(convs, q, keep_edge_convs, cfg.source)
    quantized, activations = {}, {}
    for c in convs:
        if c.name in skipped:
            continue
        axis = WEIGHT_AXIS[c.op_type] if q.quantize_per_channel else None
        scale = weight_scale(consts[c.weight], axis, power2=q.weight_scale == "power2")
        quantized[c.name] = ConvQuant(c.name, c.op_type, c.input, c.output, c.weight, scale, axis)
        for t in (c.input, c.output):
            activations.setdefault(t, activation_quant(t, ranges[t]))
    return QuantPlan(calibrate_mode=q.calibrate_mode, activations=activations, convs=quantized, skipped=skipped,
                     skip_dtype=q.skip_dtype, per_channel=q.quantize_per_channel, weight_scale_mode=q.weight_scale,
                     images=list(images), images_sha256=key["images_sha256"], model_sha256=key["model_sha256"],
                     from_cache=from_cache, cache_path=Path(cache_dir) / cache.CACHE_FILE, settings=key["settings"])
