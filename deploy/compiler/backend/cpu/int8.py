"""int8 conv2d (NHWC): u8 activations x s8 weights -> s32, tensorized with AVX-512 VNNI.

The Relax rewrite (deploy.compiler.qdq_to_integer) leaves `conv2d(x_u8, w_s8, out_dtype="int32")` (and the
kernel == stride `conv2d_transpose`) in the graph; this module legalizes them into the packed
conv blocks of packing.py with the reduction over input channels split in groups of 4 (`rco`,
`rci`) and the weights packed `Wp[co // B, ry, rx, ci // 4, co % B, ci % 4]`, so that one output
pixel x 16 channels x 4 input channels is exactly one `vpdpbusd` (vnni.py). CI is zero-padded to
a multiple of 4 (weights and the per-row input copy), CO to the tile as in fp32.

Spatial padding is with 0, which is the zero point of every u8 activation the rewrite produces
directly; signed activations arrive shifted to u8 (zero point 128) and already padded with 128 by
an explicit `nn.pad`, so the conv itself never needs another pad value.
"""
from __future__ import annotations

import numpy as np
from tvm import relax, te, tirx

from .packing import PAD_BLOCK, co_block, const_array, packed_conv, w_block
from .vnni import GROUP, LANES, VNNI_16X4

ACC = "int32"
KIND = "int8"   # schedule.SCHEDULES key: schedule.conv with the VNNI tile below


def pack_weight(w_hwio: np.ndarray, b: int) -> np.ndarray:
    """HWIO int8 weights -> [CO/B, KH, KW, CI/4, B, 4] (CO padded to B, CI to 4, with zeros)."""
    kh, kw, ci, co = w_hwio.shape
    cop, cip = -(-co // b) * b, -(-ci // GROUP) * GROUP
    w = np.zeros((kh, kw, cip, cop), np.int8)
    w[:, :, :ci, :co] = w_hwio
    w = w.reshape(kh, kw, cip // GROUP, GROUP, cop // b, b)
    return np.ascontiguousarray(w.transpose(4, 0, 1, 2, 5, 3))


def _pad(x: te.Tensor, pt: int, pl: int, pb: int, pr: int, cip: int) -> te.Tensor:
    """Zero padding in space and up to `cip` channels (scheduled per output row, as in fp32)."""
    n, hh, ww, ci = x.shape
    if not (pt or pl or pb or pr) and int(ci) == cip:
        return x

    def body(i, y, xx, c):
        ok = tirx.all(y >= pt, y < pt + hh, xx >= pl, xx < pl + ww, c < ci)
        return tirx.if_then_else(ok, x[i, y - pt, xx - pl, c], tirx.const(0, x.dtype))
    return te.compute((n, hh + pt + pb, ww + pl + pr, cip), body, name=PAD_BLOCK)


def conv_nhwc(x: te.Tensor, wp: te.Tensor, co: int, strides, padding, dilation) -> te.Tensor:
    """out[n,h,w,c] (int32) = sum x_pad[n, h*s+ry*d, w*s+rx*d, 4*rco+rci] *
    wp[c//B, ry, rx, rco, c%B, rci]; padding = (top, left, bottom, right)."""
    n, hh, ww = x.shape[0], int(x.shape[1]), int(x.shape[2])
    nb, kh, kw, ci4, b, _ = (int(v) for v in wp.shape)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilation, padding
    oh = (hh + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (ww + pl + pr - dw * (kw - 1) - 1) // sw + 1
    wb = w_block(ow, b, 4)
    owp = -(-ow // wb) * wb
    xp = _pad(x, pt, pl, pb, max(pr, (owp - 1) * sw + dw * (kw - 1) + 1 - ww - pl), ci4 * GROUP)
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    rco, rci = te.reduce_axis((0, ci4), "rco"), te.reduce_axis((0, GROUP), "rci")

    def body(i, h, w, c):
        return te.sum(xp[i, h * sh + ry * dh, w * sw + rx * dw, rco * GROUP + rci].astype(ACC) *
                      wp[c // b, ry, rx, rco, c % b, rci].astype(ACC), axis=[ry, rx, rco, rci])
    return packed_conv((n, oh, owp, nb * b), body, ow, wb, b, co, ACC, ACC, kind=KIND)


def upconv_nhwc(x: te.Tensor, wp: te.Tensor, co: int) -> te.Tensor:
    """conv2d_transpose with kernel == stride, no padding (conv2d.upconv_nhwc in int8):
    out[n, h, w, c] = sum x[n, h//s, w//s, 4*rco+rci] * wp[c//B, h%s, w%s, rco, c%B, rci]."""
    n, hh, ww = x.shape[0], int(x.shape[1]), int(x.shape[2])
    nb, sh, sw, ci4, b, _ = (int(v) for v in wp.shape)
    oh, ow = hh * sh, ww * sw
    wb = w_block(ow, b, 4)
    owp = -(-ow // wb) * wb
    xp = _pad(x, 0, 0, 0, -(-owp // sw) - ww, ci4 * GROUP)
    rco, rci = te.reduce_axis((0, ci4), "rco"), te.reduce_axis((0, GROUP), "rci")

    def body(i, h, w, c):
        return te.sum(xp[i, h // sh, w // sw, rco * GROUP + rci].astype(ACC) *
                      wp[c // b, h % sh, w % sw, rco, c % b, rci].astype(ACC), axis=[rco, rci])
    return packed_conv((n, oh, owp, nb * b), body, ow, wb, b, co, ACC, ACC, kind=KIND)


def _int8_operands(call) -> bool:
    return (str(call.args[0].ty.dtype) == "uint8" and str(call.args[1].ty.dtype) == "int8"
            and str(call.attrs.out_dtype) == ACC and int(call.attrs.groups) == 1
            and const_array(call.args[1]) is not None)


def is_int8_upconv(call) -> bool:
    """The rewrite's integer up-conv: kernel == stride, no padding, NHWC/IOHW."""
    a = call.attrs
    return (_int8_operands(call) and (a.data_layout, a.kernel_layout, a.out_layout) == ("NHWC", "IOHW", "NHWC")
            and list(const_array(call.args[1]).shape[2:]) == [int(s) for s in a.strides]
            and not any(int(v) for v in (*a.padding, *a.output_padding)) and all(int(d) == 1 for d in a.dilation))


def legalize_conv2d_transpose(bb, call):
    """`conv2d_transpose(u8, s8 const, out_dtype=int32)`, kernel == stride -> the VNNI up-conv."""
    w = const_array(call.args[1])                   # IOHW: (CI, CO, s, s)
    co = w.shape[1]
    wp = relax.const(pack_weight(w.transpose(2, 3, 0, 1), co_block(co, LANES)))
    return bb.call_te(upconv_nhwc, call.args[0], wp, co, primfunc_name_hint="conv2d_transpose_nhwc_int8")


def is_int8_conv(call) -> bool:
    """The rewrite's integer conv: u8 data, constant s8 weights, int32 result, NHWC/HWIO."""
    return _int8_operands(call) and (call.attrs.data_layout, call.attrs.kernel_layout,
                                     call.attrs.out_layout) == ("NHWC", "HWIO", "NHWC")


def legalize_conv2d(bb, call):
    """`conv2d(u8, s8 const, out_dtype=int32)` in NHWC/HWIO -> the VNNI conv above."""
    a = call.attrs
    w = const_array(call.args[1])
    co = w.shape[3]
    wp = relax.const(pack_weight(w, co_block(co, LANES)))
    return bb.call_te(conv_nhwc, call.args[0], wp, co, [int(s) for s in a.strides],
                      [int(p) for p in a.padding], [int(d) for d in a.dilation],
                      primfunc_name_hint="conv2d_nhwc_int8")


def vnni_tile(sch, block, vec, rd0) -> None:
    """Finish schedule.conv's tile for int8: `vec` (the tile's channels, with the 4 input channels
    of a dot-product group inside it) is split in 16-channel groups, each (16 x 4) step becomes
    one VNNI intrinsic call; the accumulator init is vectorized."""
    groups, lanes16 = sch.split(vec, [None, LANES])
    sch.unroll(groups)
    init = sch.decompose_reduction(block, rd0)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(lanes16, VNNI_16X4)
