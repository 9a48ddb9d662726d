"""What every packed conv kernel shares: block names, register-tile sizes, weight packing, and the
conv block with its crop stage.

Every conv-like op (direct conv2d, conv2d_transpose, int8 VNNI, the Winograd GEMM) is lowered to one
reduction block over iterators (n, h, w, co | reductions...) that reads weights packed as
`Wp[co // B, ..., co % B]` (packed in numpy at compile time: the weights are constants). The block's
annotations carry the register tile (`wb` output columns x `B` channels) the scheduler uses; the
output is computed on a width padded to a multiple of `wb` and on CO padded to a multiple of `B` and
cropped by a trailing stage (the "tail": no predicate in the micro-kernel).

A leaf: the kernel modules (conv2d, conv2d_transpose, int8, winograd) and the schedules import it,
it imports none of them (only the target's vector width).
"""
from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import te

from .target import vector_bits

CONV_BLOCK = "conv_nhwc_packed"
PAD_BLOCK = "conv_input_pad"
CROP_BLOCK = "conv_crop"
TILE_BYTES = 1536  # accumulator tile: 24 of the 32 zmm registers
NHWC = "NHWC"


def nbytes(dtype: str) -> int:
    return tvm.runtime.DataType(dtype).bits // 8


def lanes(dtype: str) -> int:
    """SIMD lanes of `dtype` on the current target (512-bit registers unless it says less)."""
    target = tvm.target.Target.current(allow_none=True)
    bits = vector_bits(target) if target is not None else 512
    return bits // 8 // nbytes(dtype)


def co_block(co: int, n_lanes: int) -> int:
    """Channels per register tile: 4/2/1 vectors (64/32/16 fp32 on 512-bit); CO is padded up."""
    for b in (4 * n_lanes, 2 * n_lanes):
        if co % b == 0:
            return b
    return n_lanes if co <= 2 * n_lanes else n_lanes * 2


def w_block(ow: int, b: int, acc_bytes: int) -> int:
    """Output columns per tile: the size wasting least padding among those fitting TILE_BYTES."""
    hi = max(1, min(TILE_BYTES // (b * acc_bytes), 12))
    cands = range(min(max(hi // 2, 1), ow), min(hi, ow) + 1)
    return min(cands, key=lambda r: (math.ceil(ow / r) * r, -r))


def pack_weight(w_hwio: np.ndarray, b: int) -> np.ndarray:
    """HWIO weights -> [CO/B, KH, KW, CI, B] (CO zero-padded to a multiple of B)."""
    kh, kw, ci, co = w_hwio.shape
    cop = -(-co // b) * b
    w = np.zeros((kh, kw, ci, cop), w_hwio.dtype)
    w[..., :co] = w_hwio
    return np.ascontiguousarray(w.reshape(kh, kw, ci, cop // b, b).transpose(3, 0, 1, 2, 4))


def tile_attrs(wb: int, b: int, kind: str = "conv") -> dict:
    """Annotations of a schedule anchor block: register tile and the schedule.SCHEDULES key."""
    return {"segdeploy.wb": wb, "segdeploy.cb": b, "segdeploy.kind": kind}


def packed_conv(shape, body, ow: int, wb: int, b: int, co: int, acc: str, out_dtype: str,
                kind: str = "conv") -> te.Tensor:
    """The conv block on the padded (width, channel) domain, then crop/cast when needed."""
    n, oh, owp, cop = shape
    out = te.compute(shape, body, name=CONV_BLOCK, attrs=tile_attrs(wb, b, kind))
    if owp != ow or cop != co or out_dtype != acc:
        out = te.compute((n, oh, ow, co), lambda *i: out[i].astype(out_dtype), name=CROP_BLOCK)
    return out


# ---- what a legalization reads off a relax call ---------------------------------------------

def const_array(e) -> np.ndarray | None:
    """numpy value of a relax constant argument, else None."""
    value = getattr(e, "value", None)
    return value.numpy() if isinstance(value, tvm.runtime.Tensor) else None


def out_dtype_of(call) -> str:
    return str(call.ty.dtype)


def packable(call, kernel_layout: str, grouped: bool = False) -> bool:
    """Constant weights, NHWC data and output with `kernel_layout` weights: what the packed kernels
    take (the weights are repacked in numpy); groups == 1, or > 1 when `grouped`."""
    a = call.attrs
    return (const_array(call.args[1]) is not None and (int(a.groups) > 1) == grouped
            and (a.data_layout, a.kernel_layout, a.out_layout) == (NHWC, kernel_layout, NHWC))
