"""Winograd F(4x4, 3x3) for stride-1 3x3 convs: 36 instead of 144 MACs per 4x4 output tile.

    V = Bt d B   (input tiles 6x6, per channel)      separable, sparse coefficients
    M = V . U    (36 independent CI x CO GEMMs)      the packed micro-kernel (packing.py)
    Y = At M A   (4x4 output tiles)                  separable
U = G g Gt is computed in numpy at compile time and packed [CO/B, 6, 6, CI, B]. The transforms
are written as Select chains over the tile axes; the schedule unrolls those axes, so each
element becomes a short sum with constant coefficients (no multiplications by zero).
"""
from __future__ import annotations

import numpy as np
from tvm import relax, te, tirx

from .packing import PAD_BLOCK, co_block, const_array, lanes, nbytes, out_dtype_of, pack_weight, tile_attrs, w_block

TILE, ALPHA = 4, 6
GEMM_BLOCK = "winograd_gemm"
MIN_CHANNELS = 16
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], "float64")
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], "float64")
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], "float64")


def applicable(kh, kw, strides, dilation, ci, co, out_hw, min_size: int) -> bool:
    """3x3, stride 1, dilation 1, enough channels, output sides >= min_size (>= 10: below, the
    transformed weights (4x the direct ones) cost more memory traffic than the MACs saved)."""
    return ((kh, kw) == (3, 3) and list(strides) == [1, 1] and list(dilation) == [1, 1]
            and ci >= MIN_CHANNELS and co >= MIN_CHANNELS and min(out_hw) >= max(min_size, 10))


def fits(call, min_size: int) -> bool:
    """`applicable` read off a packable (packing.packable) relax conv2d call."""
    a = call.attrs
    kh, kw, ci, co = const_array(call.args[1]).shape
    return applicable(kh, kw, [int(s) for s in a.strides], [int(d) for d in a.dilation], ci, co,
                      [int(v) for v in call.ty.shape.values[1:3]], min_size)


def weight_transform(w_hwio: np.ndarray) -> np.ndarray:
    """HWIO 3x3 weights -> U[6, 6, CI, CO] = G g Gt, float32 (as two small matmuls)."""
    g, w = G.astype("float32"), w_hwio.astype("float32").reshape(3, 3, -1)
    u = np.einsum("yb,xbc->xyc", g, np.einsum("xa,abc->xbc", g, w))
    return u.reshape(ALPHA, ALPHA, *w_hwio.shape[2:])


def _lin(rows: np.ndarray, idx, load):
    """Select(idx == i, sum_k rows[i, k] * load(k)) over the rows, zero coefficients skipped."""
    expr = None
    for i in reversed(range(rows.shape[0])):
        e = None
        for k, c in enumerate(rows[i]):
            if c == 0:
                continue
            t = load(k) if c == 1 else (-load(k) if c == -1 else load(k) * float(c))
            e = t if e is None else e + t
        expr = e if expr is None else tirx.Select(idx == i, e, expr)
    return expr


def conv3x3_winograd(x: te.Tensor, up: te.Tensor, co: int, padding, acc: str,
                     out_dtype: str) -> te.Tensor:
    """Stride-1, dilation-1 3x3 conv (padding top, left, bottom, right) on packed U."""
    n, hh, ww, ci = (x.shape[0], *(int(v) for v in x.shape[1:]))
    nb, _, _, _, b = (int(v) for v in up.shape)
    pt, pl, pb, pr = padding
    oh, ow = hh + pt + pb - 2, ww + pl + pr - 2
    th, tw = -(-oh // TILE), -(-ow // TILE)
    twb = w_block(tw, b, nbytes(acc))
    twp = -(-tw // twb) * twb
    ph, pw = th * TILE + 2, twp * TILE + 2

    def pad(i, y, xx, c):
        ok = tirx.all(y >= pt, y < pt + hh, xx >= pl, xx < pl + ww)
        return tirx.if_then_else(ok, x[i, y - pt, xx - pl, c].astype(acc), tirx.const(0, acc))
    xp = te.compute((n, ph, pw, ci), pad, name=PAD_BLOCK)
    v1 = te.compute((n, th, twp, ALPHA, ALPHA, ci), lambda i, t, s, a, nu, c: _lin(
        BT, nu, lambda k: xp[i, t * TILE + a, s * TILE + k, c]), name="winograd_v1")
    v = te.compute((n, th, twp, ALPHA, ALPHA, ci), lambda i, t, s, xi, nu, c: _lin(
        BT, xi, lambda k: v1[i, t, s, k, nu, c]), name="winograd_v")
    rc = te.reduce_axis((0, ci), "rc")
    m = te.compute((n, th, twp, ALPHA, ALPHA, nb * b), lambda i, t, s, xi, nu, o: te.sum(
        v[i, t, s, xi, nu, rc] * up[o // b, xi, nu, rc, o % b].astype(acc), axis=rc),
        name=GEMM_BLOCK, attrs=tile_attrs(twb, b, "winograd"))
    y1 = te.compute((n, th, twp, TILE, ALPHA, nb * b), lambda i, t, s, r, nu, o: _lin(
        AT, r, lambda k: m[i, t, s, k, nu, o]), name="winograd_y1")
    y = te.compute((n, th, twp, TILE, TILE, nb * b), lambda i, t, s, r, q, o: _lin(
        AT, q, lambda k: y1[i, t, s, r, k, o]), name="winograd_y")
    return te.compute((n, oh, ow, co), lambda i, h, w, o: y[
        i, h // TILE, w // TILE, h % TILE, w % TILE, o].astype(out_dtype), name="winograd_out")


def legalize(bb, call):
    """A conv2d that `fits` -> conv3x3_winograd on U packed [CO/B, 6, 6, CI, B]; the transforms
    amplify rounding (x8 on fp16 U): U and the accumulation stay fp32."""
    w = const_array(call.args[1])
    co = w.shape[3]
    up = relax.const(pack_weight(weight_transform(w.astype("float32")), co_block(co, lanes("float32"))))
    return bb.call_te(conv3x3_winograd, call.args[0], up, co, [int(p) for p in call.attrs.padding], "float32",
                      out_dtype_of(call), primfunc_name_hint="conv2d_winograd")
