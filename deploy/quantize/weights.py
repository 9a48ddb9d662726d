"""Symmetric int8 weight quantization: q = clip(round(w / scale), -127, 127), zero point 0.

Per channel, the scale is max |w| / 127 over everything but the output-channel axis (see
WEIGHT_AXIS); per tensor, one scale for the whole array (a 0-d array). `power2` rounds each scale
up to the next power of two (the vendor's `weight_scale: power2`), which never clips. An all-zero
channel gets scale 1.0 (its values quantize to 0 exactly). The round-trip error is at most
scale/2 per element.
"""
from __future__ import annotations

import numpy as np

QMAX = 127

# ONNX op type → axis of the weight that indexes output channels. ConvTranspose weights are
# (C_in, C_out/group, kH, kW); with group > 1 its per-channel scales are per axis-1 slice, shared
# by the groups, which is what DequantizeLinear(axis=1) expresses.
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}


def weight_scale(w: np.ndarray, axis: int | None, power2: bool = False) -> np.ndarray:
    """float32 scales: shape (w.shape[axis],) per channel, shape () when `axis` is None."""
    a = np.abs(np.asarray(w, dtype=np.float32))
    if axis is None:
        amax = np.asarray(a.max() if a.size else 0.0, dtype=np.float32)
    else:
        amax = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
    if power2:
        scale = np.exp2(np.ceil(np.log2(scale))).astype(np.float32)
    return scale


def _broadcast(scale: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    if axis is None or scale.ndim == 0:
        return scale
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape)


def quantize_weight(w: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    """int8 values of `w` for `scale` (from weight_scale with the same axis)."""
    s = _broadcast(np.asarray(scale, np.float32), np.ndim(w), axis)
    return np.clip(np.rint(np.asarray(w, np.float32) / s), -QMAX, QMAX).astype(np.int8)


def dequantize_weight(q: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    s = _broadcast(np.asarray(scale, np.float32), np.ndim(q), axis)
    return q.astype(np.float32) * s
