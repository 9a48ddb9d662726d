"""vdsp_params JSON (the vendor's fused device preprocessing op) → VdspConfig, current
(`OpType`/`OpConfig`) and legacy 2023 (`vdsp_op_type`/`config` list, fp16 bit patterns)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.config.ops import MEAN_STD_TYPES, NORMA_TYPES, RESIZE_TYPES
from deploy.config.reader import Node, load_document
from deploy.errors import UnsupportedError

IMAGE_FORMATS = ("RGB_PLANAR", "RGB888", "BGR888")
CVT_CODES = ("NO_CHANGE", "RGB2BGR", "BGR2RGB")
OP_RESIZE = "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR"
OP_CROP = "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR"
OP_LETTERBOX = "FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR"
LEGACY_OPS = {"RGB_RESIZE_CVTCOLOR_NORMALIZATION_TENSORIZATION_U8": OP_RESIZE,
              "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8": OP_CROP}


@dataclass(frozen=True)
class VdspConfig:
    op_type: str
    image_format: str
    out_size: tuple[int, int]              # (H, W) of the model input
    resize_type: str
    color_cvt: str                         # NO_CHANGE, RGB2BGR, BGR2RGB
    norma_type: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    in_size: tuple[int, int] | None = None  # (H, W) the JSON was written for; the runtime resizes any size
    resize_size: tuple[int, int] | None = None  # CROP op: resize here, then crop out_size at crop_xy
    crop_xy: tuple[int, int] = (0, 0)
    source: Path | None = None


def load_vdsp_config(path: str | Path) -> VdspConfig:
    root = load_document(path, "vdsp params file", "JSON", json.loads, json.JSONDecodeError)
    if root.has("vdsp_op_type"):
        return _legacy(root)
    return _current(root)


def _current(root: Node) -> VdspConfig:
    root.warn_unknown(("OpType", "OpConfig"))
    op = root.get("OpType", str, choices=(OP_RESIZE, OP_CROP, OP_LETTERBOX))
    return _build(op, root.child("OpConfig"), _CURRENT_KEYS)


def _legacy(root: Node) -> VdspConfig:
    """Flatten the legacy property list into a mapping, decoding fp16 bit patterns."""
    root.warn_unknown(("vdsp_op_type", "config"))
    op = root.get("vdsp_op_type", str, choices=LEGACY_OPS)
    flat = {}
    for i, item in enumerate(root.get("config", list)):
        entry = Node(item, root.file, f"config[{i}]")
        name = entry.get("Property", str)
        value = entry.get("Value", (int, float, str))
        if name in _LEGACY_HALF and isinstance(value, int):
            if not 0 <= value < 65536:
                raise entry.error(f"{name}: not a 16-bit half-precision pattern: {value}", "Value")
            value = float(np.array(value, np.uint16).view(np.float16))
            if not np.isfinite(value):
                raise entry.error(f"{name}: the half-precision pattern {item['Value']:#06x} is {value}, "
                                  "not a finite number", "Value")
        flat[name] = value
    return _build(LEGACY_OPS[op], Node(flat, root.file, "config"), _LEGACY_KEYS)


_CURRENT_KEYS = dict(fmt="IimageFormat", iw="IimageWidth", ih="IimageHeight", ow="OimageWidth",
                     oh="OimageHeight", resize="ResizeType", cvt="ColorCvtCode", norma="NormaType",
                     rw="ResizeWidth", rh="ResizeHeight", cx="CropX", cy="CropY")
_LEGACY_KEYS = dict(fmt="iimage_format", iw="iimage_width", ih="iimage_height", ow="oimage_width",
                    oh="oimage_height", resize="resize_type", cvt="color_cvt_code", norma="norma_type",
                    rw="resize_width", rh="resize_height", cx="crop_x", cy="crop_y")
_LEGACY_HALF = ("meanr", "meang", "meanb", "stdr", "stdg", "stdb")
_IGNORED = {"IimageWidthPitch", "IimageHeightPitch", "iimage_width_pitch", "iimage_height_pitch",
            "color_space", "ColorSpace"}


def _build(op: str, n: Node, k: dict) -> VdspConfig:
    if op == OP_LETTERBOX:
        raise UnsupportedError(f"{n.file}: OpType {op} is not implemented; supported: {OP_RESIZE}, {OP_CROP}")
    legacy = k is _LEGACY_KEYS
    known = set(k.values()) | _IGNORED | (set(_LEGACY_HALF) if legacy else {"Mean", "Std"})
    n.warn_unknown(known)
    cvt = n.get(k["cvt"], str, "NO_CHANGE")
    cvt = cvt[len("COLOR_"):] if cvt.startswith("COLOR_") else cvt
    if cvt not in CVT_CODES:
        raise n.error(f"unsupported value {cvt!r}; accepted: {', '.join(CVT_CODES)}", k["cvt"])
    norma = n.get(k["norma"], str, choices=NORMA_TYPES)
    mean, std = _mean_std(n, legacy, norma in MEAN_STD_TYPES)
    if "MINUSMEAN_DIVSTD" in norma and any(s == 0 for s in std):
        raise n.error(f"std must be non-zero for {norma}, got {std}", "Std" if not legacy else "stdr")
    out = (_pos(n, k["oh"]), _pos(n, k["ow"]))
    resize_size, crop = None, (0, 0)
    if op == OP_CROP:
        resize_size = (_pos(n, k["rh"]), _pos(n, k["rw"]))
        crop = (n.get(k["cx"], int, 0), n.get(k["cy"], int, 0))
        if crop[0] + out[1] > resize_size[1] or crop[1] + out[0] > resize_size[0]:
            raise n.error(f"crop window {out} at x,y={crop} exceeds the resize size {resize_size}", k["cx"])
    in_size = (n.get(k["ih"], int, 0), n.get(k["iw"], int, 0))
    return VdspConfig(op_type=op, image_format=n.get(k["fmt"], str, "RGB_PLANAR", IMAGE_FORMATS),
                      out_size=out, resize_type=n.get(k["resize"], str, "BILINEAR_CV", RESIZE_TYPES),
                      color_cvt=cvt, norma_type=norma, mean=mean, std=std,
                      in_size=in_size if min(in_size) > 0 else None, resize_size=resize_size,
                      crop_xy=crop, source=n.file)


def _mean_std(n: Node, legacy: bool, needed: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and Std: required by a NormaType that uses them (a missing one is not silently 0 or 1);
    otherwise unused, and 0/1 when absent."""
    if legacy:
        def get(key: str, default: float) -> float:
            return n.get(key, float) if needed else n.get(key, float, default)
        return tuple(get(f"mean{c}", 0.0) for c in "rgb"), tuple(get(f"std{c}", 1.0) for c in "rgb")
    if needed:
        return n.floats("Mean", 3), n.floats("Std", 3)
    return n.floats("Mean", 3, (0.0, 0.0, 0.0)), n.floats("Std", 3, (1.0, 1.0, 1.0))


def _pos(n: Node, key: str) -> int:
    v = n.get(key, int)
    if v <= 0:
        raise n.error(f"must be positive, got {v}", key)
    return v
