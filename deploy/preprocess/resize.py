"""The resize kernels named by vdsp ResizeType (and Resize.method in process_ops).

BILINEAR_CV is cv2.resize INTER_LINEAR on uint8 (what the vendor's Python pipeline does);
BILINEAR_PILLOW reproduces PIL's antialiased bilinear (support grows when downscaling);
BILINEAR is plain half-pixel bilinear in float, without rounding back to 8 bits.
"""
from __future__ import annotations

import cv2
import numpy as np


def resize(img: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Resize an HWC image to (H, W)."""
    h, w = size
    if method == "BILINEAR_CV":
        return _cv2(img, (w, h), cv2.INTER_LINEAR)
    if method == "NEAREST_CV":
        return _cv2(img, (w, h), cv2.INTER_NEAREST)
    if method == "BILINEAR_PILLOW":
        return _pillow(img, (h, w))
    if method == "BILINEAR":
        return _separable(img, _linear_weights(img.shape[0], h), _linear_weights(img.shape[1], w))
    raise ValueError(f"unknown resize method {method!r}")


def _cv2(img: np.ndarray, wh: tuple[int, int], interp: int) -> np.ndarray:
    if img.shape[1::-1] == wh:
        return img.copy()
    out = cv2.resize(img, wh, interpolation=interp)
    return out[..., None] if out.ndim == 2 and img.ndim == 3 else out


def _separable(img: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    rows = np.einsum("oh,hwc->owc", wy, img.astype(np.float32), optimize=True)
    return np.einsum("pw,owc->opc", wx, rows, optimize=True)


def _pillow(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL resamples horizontally first and rounds 8-bit data back to uint8 between passes
    (22-bit fixed-point weights, round half up). Measured against Pillow: bit-exact for
    single-axis resizes, within one grey level when both axes change."""
    out = img
    for axis, n_out in ((1, size[1]), (0, size[0])):
        if out.shape[axis] == n_out and img.dtype == np.uint8:
            continue
        wts = _pillow_weights(out.shape[axis], n_out)
        if img.dtype == np.uint8:
            wts = np.rint(wts * (1 << 22)).astype(np.int64)
            acc = np.tensordot(wts, out.astype(np.int64), axes=([1], [axis])) + (1 << 21)
            out = np.clip(acc >> 22, 0, 255).astype(np.uint8)
        else:
            out = np.tensordot(wts, out.astype(np.float32), axes=([1], [axis]))
        out = np.moveaxis(out, 0, axis)
    return out


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """Half-pixel bilinear (align_corners=False) with edge clamping, as a dense (out, in) matrix."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def _pillow_weights(n_in: int, n_out: int) -> np.ndarray:
    """PIL's triangle filter: support scales with the downscale factor, weights renormalised."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    lo = np.maximum((centers - support + 0.5).astype(int), 0)
    hi = np.minimum((centers + support + 0.5).astype(int), n_in)
    x = np.arange(n_in)[None, :]
    w = np.clip(1 - np.abs((x - centers[:, None] + 0.5) / support), 0, None)
    w *= (x >= lo[:, None]) & (x < hi[:, None])
    return w / w.sum(axis=1, keepdims=True)  # float64: PIL rounds these to 22-bit integers
