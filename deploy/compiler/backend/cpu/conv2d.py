"""NHWC direct convolution on packed weights: the compute side of the fast CPU path.

The conv block and its packing are packing.py's (read it first). Few output channels (CO < half
a vector, e.g. the 1-channel heads) take B = 1: CI is vectorized into partial sums instead. An
int8 variant (int8.py) only changes the packing ([.., CI/4, B, 4]) and tensorizes the inner loops
of the same tile; which conv gets which kernel is legalize.py's table.
"""
from __future__ import annotations

from tvm import relax, te, tirx

from .packing import (CONV_BLOCK, PAD_BLOCK, co_block, const_array, lanes, nbytes, out_dtype_of, pack_weight,
                      packed_conv, tile_attrs, w_block)


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


def conv_nhwc(x: te.Tensor, wp: te.Tensor, co: int, strides, padding, dilation,
              acc: str, out_dtype: str, groups: int = 1) -> te.Tensor:
    """out[n,h,w,c] = sum x_pad[n, h*s+ry*d, w*s+rx*d, g(c)*CI/G + rc] * wp[c//B, ry, rx, rc, c%B]
    with g(c) = c // (CO/G), the group of output channel c (G = 1: a dense conv).
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
    cig, cog = ci // groups, co // groups
    rc = te.reduce_axis((0, cig), "rc")

    def channel(c):
        return rc if groups == 1 else (c // cog) * cig + rc

    def body(i, h, w, c):
        return te.sum(xp[i, h * sh + ry * dh, w * sw + rx * dw, channel(c)] *
                      wp[c // b, ry, rx, rc, c % b].astype(acc), axis=[ry, rx, rc])
    return packed_conv((n, oh, owp, nb * b), body, ow, wb, b, co, acc, out_dtype)


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
    return packed_conv((n, oh, owp, nb * b), body, ow, wb, b, co, acc, out_dtype)


def legalize(bb, call):
    """NHWC/HWIO conv2d with constant weights, groups == 1 (packing.packable) -> the packed direct
    conv (B = 1 and CI in partial sums when CO is below half a vector)."""
    a = call.attrs
    w = const_array(call.args[1])
    _, _, ci, co = w.shape
    dt = out_dtype_of(call)
    n_lanes = lanes(dt)
    small = co < n_lanes // 2 and ci % n_lanes == 0   # vectorize CI instead of CO
    wp = relax.const(pack_weight(w, 1 if small else co_block(co, n_lanes)))
    return bb.call_te(conv_nhwc, call.args[0], wp, co, [int(s) for s in a.strides], [int(p) for p in a.padding],
                      [int(d) for d in a.dilation], dt, dt, primfunc_name_hint="conv2d_nhwc")


def group_block(co: int, groups: int, n_lanes: int) -> int:
    """Channels per register tile of a grouped conv, at most 4 vectors: a divisor of CO (no padded
    output channel may read past the input's channels) and, unless depthwise, of CO/G (a tile in
    one group reads one input channel per step, broadcast; depthwise reads consecutive ones)."""
    span = co if co == groups else co // groups
    return next(b for b in (4 * n_lanes, 2 * n_lanes, n_lanes, 8, 4, 2, 1) if span % b == 0)


def legalize_grouped(bb, call):
    """NHWC/HWIO grouped or depthwise conv2d with constant weights: the packed direct kernel with
    the input channel taken from the output channel's group (depthwise: one vector load per tap)."""
    a = call.attrs
    w = const_array(call.args[1])
    co = w.shape[3]
    dt = out_dtype_of(call)
    wp = relax.const(pack_weight(w, group_block(co, int(a.groups), lanes(dt))))
    return bb.call_te(conv_nhwc, call.args[0], wp, co, [int(s) for s in a.strides], [int(p) for p in a.padding],
                      [int(d) for d in a.dilation], dt, dt, int(a.groups), primfunc_name_hint="conv2d_grouped_nhwc")
