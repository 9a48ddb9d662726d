"""NHWC direct convolution on packed weights: the compute side of the fast CPU path.

Every conv-like op (conv2d, conv2d_transpose) is lowered to one reduction block named
`CONV_BLOCK` over iterators (n, h, w, co | reductions...) that reads weights packed as
`Wp[co // B, ..., co % B]` (packed in numpy at compile time: the weights are constants).
The block's annotations carry the register tile (`wb` output columns x `B` channels) the
scheduler uses; the output is computed on a width padded to a multiple of `wb` and on CO
padded to a multiple of `B` and cropped by a trailing stage (the "tail": no predicate in the
micro-kernel). Few output channels (CO < half a vector, e.g. the 1-channel heads) take B = 1:
CI is vectorized into partial sums instead. An int8 variant (int8.py) only changes the packing
([.., CI/4, B, 4]) and tensorizes the inner loops of the same tile.
"""
from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax, te, tirx

from .target import vector_bits

CONV_BLOCK = "conv_nhwc_packed"
PAD_BLOCK = "conv_input_pad"
CROP_BLOCK = "conv_crop"
TILE_BYTES = 1536  # accumulator tile: 24 of the 32 zmm registers


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


def _pad(x: te.Tensor, pt: int, pl: int, pb: int, pr: int, dtype: str) -> te.Tensor:
    """Zero padding and cast to the accumulate dtype (scheduled per output row: the
    micro-kernel then broadcasts from a small, hot, already converted buffer)."""
    n, hh, ww, ci = x.shape
    if not (pt or pl or pb or pr) and x.dtype == dtype:
        return x

    def body(i, y, xx, c):
        ok = tirx.all(y >= pt, y < pt + hh, xx >= pl, xx < pl + ww)
        return tirx.if_then_else(ok, x[i, y - pt, xx - pl, c].astype(dtype), tirx.const(0, dtype))
    return te.compute((n, hh + pt + pb, ww + pl + pr, ci), body, name=PAD_BLOCK)


def tile_attrs(wb: int, b: int, kind: str = "conv") -> dict:
    """Annotations of a schedule anchor block: register tile and the schedule.SCHEDULES key."""
    return {"segdeploy.wb": wb, "segdeploy.cb": b, "segdeploy.kind": kind}


def _packed(shape, body, ow: int, wb: int, b: int, co: int, acc: str, out_dtype: str,
            kind: str = "conv") -> te.Tensor:
    """The conv block on the padded (width, channel) domain, then crop/cast when needed."""
    n, oh, owp, cop = shape
    out = te.compute(shape, body, name=CONV_BLOCK, attrs=tile_attrs(wb, b, kind))
    if owp != ow or cop != co or out_dtype != acc:
        out = te.compute((n, oh, ow, co), lambda *i: out[i].astype(out_dtype), name=CROP_BLOCK)
    return out


def conv_nhwc(x: te.Tensor, wp: te.Tensor, co: int, strides, padding, dilation,
              acc: str, out_dtype: str) -> te.Tensor:
    """out[n,h,w,c] = sum x_pad[n, h*s+ry*d, w*s+rx*d, rc] * wp[c//B, ry, rx, rc, c%B].
    padding = (top, left, bottom, right)."""
    n, hh, ww, ci = (x.shape[0], *(int(v) for v in x.shape[1:]))
    nb, kh, kw, _, b = (int(v) for v in wp.shape)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilation, padding
    oh = (hh + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (ww + pl + pr - dw * (kw - 1) - 1) // sw + 1
    wb = w_block(ow, b, nbytes(acc))
    owp = -(-ow // wb) * wb
    xp = _pad(x, pt, pl, pb, max(pr, (owp - 1) * sw + dw * (kw - 1) + 1 - ww - pl), acc)
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    if b == 1:  # few output channels: vectorize CI into `ln` partial sums, then add them up
        ln = lanes(acc)
        rc = te.reduce_axis((0, ci // ln), "rc")
        part = te.compute((n, oh, owp, co, ln), lambda i, h, w, c, l: te.sum(
            xp[i, h * sh + ry * dh, w * sw + rx * dw, rc * ln + l] *
            wp[c, ry, rx, rc * ln + l, 0].astype(acc), axis=[ry, rx, rc]),
            name=CONV_BLOCK, attrs=tile_attrs(wb, 1))
        rl = te.reduce_axis((0, ln), "rl")
        return te.compute((n, oh, ow, co), lambda i, h, w, c: te.sum(
            part[i, h, w, c, rl], axis=rl).astype(out_dtype), name="conv_lane_sum")
    rc = te.reduce_axis((0, ci), "rc")

    def body(i, h, w, c):
        return te.sum(xp[i, h * sh + ry * dh, w * sw + rx * dw, rc] *
                      wp[c // b, ry, rx, rc, c % b].astype(acc), axis=[ry, rx, rc])
    return _packed((n, oh, owp, nb * b), body, ow, wb, b, co, acc, out_dtype)


def upconv_nhwc(x: te.Tensor, wp: te.Tensor, co: int, acc: str, out_dtype: str) -> te.Tensor:
    """conv2d_transpose with kernel == stride, no padding: out[n, h, w, c] =
    sum x[n, h//s, w//s, rc] * wp[c//B, h%s, w%s, rc, c%B] (a 1x1 conv per kernel tap)."""
    n, hh, ww, ci = (x.shape[0], *(int(v) for v in x.shape[1:]))
    nb, sh, sw, _, b = (int(v) for v in wp.shape)
    oh, ow = hh * sh, ww * sw
    wb = w_block(ow, b, nbytes(acc))
    owp = -(-ow // wb) * wb
    xp = _pad(x, 0, 0, 0, -(-owp // sw) - ww, acc)
    rc = te.reduce_axis((0, ci), "rc")

    def body(i, h, w, c):
        return te.sum(xp[i, h // sh, w // sw, rc] *
                      wp[c // b, h % sh, w % sw, rc, c % b].astype(acc), axis=[rc])
    return _packed((n, oh, owp, nb * b), body, ow, wb, b, co, acc, out_dtype)


# ---- legalization (relax call -> call_te of the computes above) ------------------------------

def _default(op_name: str):
    return tvm.ir.Op.get(op_name).get_attr("FLegalize")


def const_array(e) -> np.ndarray | None:
    """numpy value of a relax constant argument, else None."""
    value = getattr(e, "value", None)
    return value.numpy() if isinstance(value, tvm.runtime.Tensor) else None


def out_dtype_of(call) -> str:
    return str(call.ty.dtype)


def legalize_conv2d(bb, call, winograd_min: int | None = None):
    """NHWC/HWIO, groups == 1, constant weights -> Winograd F(4x4,3x3) (3x3 stride 1, output
    sides >= winograd_min) or the packed direct conv; u8 x s8 -> int32 (deploy.compiler.int8)
    -> the VNNI conv of int8.py; anything else -> TOPI's conv."""
    from . import int8, winograd  # noqa: PLC0415 (they import this module)

    if int8.is_int8_conv(call):
        return int8.legalize_conv2d(bb, call)
    a = call.attrs
    w = const_array(call.args[1])
    if (w is None or int(a.groups) != 1 or (a.data_layout, a.kernel_layout, a.out_layout)
            != ("NHWC", "HWIO", "NHWC")):
        return _default("relax.nn.conv2d")(bb, call)
    kh, kw, ci, co = w.shape
    dt = out_dtype_of(call)
    pad = [int(p) for p in a.padding]
    strides, dilation = [int(s) for s in a.strides], [int(d) for d in a.dilation]
    hw = [int(v) for v in call.ty.shape.values[1:3]]
    if winograd_min and winograd.applicable(kh, kw, strides, dilation, ci, co, hw, winograd_min):
        # the transforms amplify rounding (x8 on fp16 U): U and the accumulation stay fp32
        u = winograd.weight_transform(w.astype("float32"))
        up = relax.const(pack_weight(u, co_block(co, lanes("float32"))))
        return bb.call_te(winograd.conv3x3_winograd, call.args[0], up, co, pad, "float32", dt,
                          primfunc_name_hint="conv2d_winograd")
    n_lanes = lanes(dt)
    small = co < n_lanes // 2 and ci % n_lanes == 0   # vectorize CI instead of CO
    wp = relax.const(pack_weight(w, 1 if small else co_block(co, n_lanes)))
    return bb.call_te(conv_nhwc, call.args[0], wp, co, strides, pad, dilation, dt, dt,
                      primfunc_name_hint="conv2d_nhwc")
