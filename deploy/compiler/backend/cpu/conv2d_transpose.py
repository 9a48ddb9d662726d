"""conv2d_transpose (NHWC data, IOHW weights): kernel == stride without padding (UNet up-conv)
is a packed 1x1 conv per kernel tap; every other case is a stride-1 conv over the zero-dilated,
padded input with the flipped kernel (same fast kernel, s^2 more MACs, exact)."""
from __future__ import annotations

import numpy as np
from tvm import relax, te, tirx, topi

from .conv2d import conv_nhwc, upconv_nhwc
from .packing import PAD_BLOCK, co_block, const_array, lanes, out_dtype_of, pack_weight


def _dilate_pad(x: te.Tensor, s, k, d, pad, out_pad) -> te.Tensor:
    """Zero-insert (stride s) and pad so that a stride-1 conv with the flipped kernel equals
    the transposed conv; pad = (top, left, bottom, right) of the transposed conv."""
    n, hh, ww, ci = x.shape
    bt, bl = d[0] * (k[0] - 1) - pad[0], d[1] * (k[1] - 1) - pad[1]
    et, el = d[0] * (k[0] - 1) - pad[2] + out_pad[0], d[1] * (k[1] - 1) - pad[3] + out_pad[1]
    shape = (n, (hh - 1) * s[0] + 1 + bt + et, (ww - 1) * s[1] + 1 + bl + el, ci)

    def body(i, y, xx, c):
        yy, xq = y - bt, xx - bl
        ok = tirx.all(yy >= 0, xq >= 0, yy % s[0] == 0, xq % s[1] == 0,
                      yy // s[0] < hh, xq // s[1] < ww)
        return tirx.if_then_else(ok, x[i, yy // s[0], xq // s[1], c], tirx.const(0, x.dtype))
    return te.compute(shape, body, name=PAD_BLOCK)


def _topi_nchw(x, w, s, pad, out_pad, groups, dilation, dt):
    """Fallback (groups > 1 or cropping padding): TOPI's NCHW kernel between transposes."""
    if any(v != 1 for v in dilation):
        w = topi.nn.dilate(w, [1, 1, *dilation])
    y = topi.nn.group_conv2d_transpose_nchw(topi.transpose(x, [0, 3, 1, 2]), w, s, pad, dt,
                                            out_pad, groups)
    return topi.transpose(y, [0, 2, 3, 1])


def _attrs(call):
    """(strides, dilation, padding, output_padding) as int lists."""
    a = call.attrs
    return ([int(v) for v in a.strides], [int(v) for v in a.dilation], [int(v) for v in a.padding],
            [int(v) for v in a.output_padding])


def legalize_generic(bb, call):
    """Not packable (packing.packable: groups > 1, weights not constant, another layout): TOPI's
    NCHW kernel between transposes; a call in layouts TOPI lacks stays as it is (ConvertLayout
    here always yields NHWC/IOHW)."""
    a = call.attrs
    if a.data_layout != "NHWC" or a.kernel_layout != "IOHW":
        return call
    s, d, pad, out_pad = _attrs(call)
    return bb.call_te(_topi_nchw, call.args[0], call.args[1], s, pad, out_pad,
                      int(a.groups), d, out_dtype_of(call), primfunc_name_hint="conv2d_transpose")


def legalize(bb, call):
    """A packable NHWC/IOHW conv2d_transpose: kernel == stride without padding -> the packed
    up-conv; cropping padding -> TOPI; else the direct conv over the zero-dilated input."""
    s, d, pad, out_pad = _attrs(call)
    w = const_array(call.args[1])  # IOHW
    dt = out_dtype_of(call)
    _, co, kh, kw = w.shape
    b = co_block(co, lanes(dt))
    if [kh, kw] == s and d == [1, 1] and not any(pad) and not any(out_pad):
        wp = relax.const(pack_weight(w.transpose(2, 3, 0, 1), b))   # [CO/B, s, s, CI, B]
        return bb.call_te(upconv_nhwc, call.args[0], wp, co, dt, dt,
                          primfunc_name_hint="conv2d_transpose_nhwc")
    if min(d[0] * (kh - 1) - max(pad[0], pad[2]), d[1] * (kw - 1) - max(pad[1], pad[3])) < 0:
        return bb.call_te(_topi_nchw, call.args[0], call.args[1], s, pad, out_pad, 1, d, dt,
                          primfunc_name_hint="conv2d_transpose")
    wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1))   # flipped, HWIO
    wp = relax.const(pack_weight(wf, b))

    def te_fn(x, wpk):
        xd = _dilate_pad(x, s, (kh, kw), d, pad, out_pad)
        return conv_nhwc(xd, wpk, co, (1, 1), (0, 0, 0, 0), d, dt, dt)
    return bb.call_te(te_fn, call.args[0], wp, primfunc_name_hint="conv2d_transpose_nhwc")
