"""QDQ Relax graph → integer convolutions.

TVM's ONNX frontend imports a QDQ model (deploy.quantize.qdq) as fake-quant float:
`conv2d(dequantize(quantize(x)), dequantize(W_int8))`, slower than fp32, and Relax has no pass
that turns it into integer math. `to_integer(mod)` does, on the imported NCHW module, before the
CPU backend's layout passes:

    conv2d(dequantize(xq, sx, zx), dequantize(Wq, sw[c], 0))
      → (conv2d(x_u8, Wq, out_dtype="int32") - zu * sum(Wq[c])) * (sx * sw[c])

- x_u8 = xq for uint8 activations; int8 ones are shifted to uint8 (+128, exact), which VNNI's
  u8 x s8 product needs. zu is the zero point in uint8 (zx, +128 when shifted): when it is not 0
  the input is padded explicitly with zu (a real zero) and the correction zu * sum(Wq[c]) (a
  constant per channel) is subtracted in int32, so the result is exactly sum(x_q * w_q).
- conv2d_transpose with kernel == stride and no padding (the UNet up-conv: every output pixel
  takes exactly one kernel tap) and a uint8 input with zero point 0 is rewritten the same way
  (its weights are per channel along axis 1, IOHW); other transposed convs stay float.
- The int32 result times one float per channel is the conv in real units; the float bias add,
  activations and the next layer's quantize that follow are left to FuseOps, so a conv's
  requantisation (scale, bias, ReLU, divide, round, clip, cast to u8) runs in its epilogue.
- Every remaining quantize/dequantize becomes plain elementwise ops (scalar constants), so the
  layout pass keeps them NHWC and FuseOps can fuse them; dequantize of a constant is evaluated.
  Convs the rewrite does not take (not constant/symmetric int8 weights, groups, per-channel
  activation scales, the transposed convs above) thus run as float convs on dequantized values:
  the same numbers as the QDQ model, in float.
The first 3-channel conv and the 1-channel heads have no QDQ (deploy.quantize.planner), so they
stay float convs.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

U8_SHIFT = 128  # int8 → uint8: q + 128
CONV_OPS = ("relax.nn.conv2d", "relax.nn.conv2d_transpose")


def const_array(e) -> np.ndarray | None:
    """numpy value of a constant, else None."""
    value = getattr(e, "value", None)
    return value.numpy() if isinstance(value, tvm.runtime.Tensor) else None


def _scalar(e) -> float | None:
    """The value of a constant scalar (or one-element) argument, else None."""
    a = const_array(e)
    return a.reshape(-1)[0].item() if a is not None and a.size == 1 else None


def _channel(values: np.ndarray, dtype: str):
    """A per-output-channel constant shaped to broadcast over NCHW."""
    return relax.const(np.ascontiguousarray(values.reshape(1, -1, 1, 1)).astype(dtype))


class _Quant(NamedTuple):
    zx: int                 # activation zero point
    xq: relax.Expr          # the quantized activation (uint8 or int8)
    wq: np.ndarray          # int8 weights
    scale: np.ndarray       # float32 per output channel: sx * sw[c]


def _quant_args(m: dict, pat: dict, out_axis: int) -> _Quant | None:
    """The operands of a matched conv when it can run on integers, else None: per-tensor
    activation, constant symmetric int8 weights with one scale or one per output channel."""
    sx, zx = _scalar(m[pat["sx"]]), _scalar(m[pat["zx"]])
    xq, wq = m[pat["xq"]], const_array(m[pat["wq"]])
    sw, zw = const_array(m[pat["sw"]]).astype(np.float32).reshape(-1), const_array(m[pat["zw"]])
    per_channel_ok = sw.size == 1 or (sw.size == wq.shape[out_axis]
                                      and int(m[pat["dw"]].attrs.axis) == out_axis)
    if (sx is None or zx is None or str(xq.ty.dtype) not in ("uint8", "int8") or wq.dtype != np.int8
            or np.any(zw != 0) or not per_channel_ok):
        return None
    return _Quant(int(zx), xq, wq, np.broadcast_to(np.float32(sx) * sw, (wq.shape[out_axis],)))


def _integer_conv(expr: relax.Call, m: dict, pat: dict) -> relax.Expr:
    """The rewrite of one matched conv2d (see the module doc); `expr` itself when it does not apply."""
    a, q = expr.attrs, _quant_args(m, pat, 0)
    if q is None or int(a.groups) != 1 or a.data_layout != "NCHW" or a.kernel_layout != "OIHW":
        return expr
    wq, signed = q.wq, str(q.xq.ty.dtype) == "int8"
    zu = q.zx + (U8_SHIFT if signed else 0)
    x = q.xq
    if signed:
        x = relax.op.astype(relax.op.add(relax.op.astype(x, "int32"), relax.const(U8_SHIFT, "int32")), "uint8")
    padding = [int(p) for p in a.padding]
    if zu and any(padding):   # a real zero is zu, not 0: pad with it before the conv
        top, left, bottom, right = padding
        x = relax.op.nn.pad(x, [0, 0, 0, 0, top, bottom, left, right], pad_value=float(zu))
        padding = [0, 0, 0, 0]
    y = relax.op.nn.conv2d(x, relax.const(wq), strides=a.strides, padding=padding, dilation=a.dilation,
                           data_layout="NCHW", kernel_layout="OIHW", out_layout=a.out_layout, out_dtype="int32")
    if zu:
        corr = zu * wq.astype(np.int64).sum(axis=(1, 2, 3))
        y = relax.op.subtract(y, _channel(corr, "int32"))
    return relax.op.multiply(relax.op.astype(y, "float32"), _channel(q.scale, "float32"))


def _integer_upconv(expr: relax.Call, m: dict, pat: dict) -> relax.Expr:
    """conv2d_transpose, kernel == stride, no padding, uint8 input with zero point 0 (see the doc)."""
    a, q = expr.attrs, _quant_args(m, pat, 1)
    if (q is None or q.zx != 0 or str(q.xq.ty.dtype) != "uint8" or int(a.groups) != 1
            or a.data_layout != "NCHW" or a.kernel_layout != "IOHW"
            or list(q.wq.shape[2:]) != [int(v) for v in a.strides]
            or any(int(v) for v in (*a.padding, *a.output_padding)) or any(int(v) != 1 for v in a.dilation)):
        return expr
    y = relax.op.nn.conv2d_transpose(q.xq, relax.const(q.wq), strides=a.strides, data_layout="NCHW",
                                     kernel_layout="IOHW", out_layout=a.out_layout, out_dtype="int32")
    return relax.op.multiply(relax.op.astype(y, "float32"), _channel(q.scale, "float32"))


def integer_convs(func: relax.Function) -> relax.Function:
    """conv2d / conv2d_transpose(dequantize(xq), dequantize(W_int8)) → integer conv + per-channel scale."""
    for op, rewrite in (("relax.nn.conv2d", _integer_conv), ("relax.nn.conv2d_transpose", _integer_upconv)):
        pat = {k: is_const() for k in ("sx", "zx", "wq", "sw", "zw")}
        pat["xq"] = wildcard()
        pat["dx"] = is_op("relax.dequantize")(pat["xq"], pat["sx"], pat["zx"])
        pat["dw"] = is_op("relax.dequantize")(pat["wq"], pat["sw"], pat["zw"])
        conv = is_op(op)(pat["dx"], pat["dw"])
        func = rewrite_call(conv, lambda expr, m, pat=pat, rewrite=rewrite: rewrite(expr, m, pat), func)
    return func


def _dequantize_const(q: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int, dtype: str) -> np.ndarray:
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[axis] = -1
    return ((q.astype(np.float32) - zp.astype(np.float32).reshape(shape)) * scale.reshape(shape)).astype(dtype)


def _elementwise(expr: relax.Call, s: relax.Expr, z: relax.Expr) -> relax.Expr:
    """quantize / dequantize with scalar constant parameters as elementwise ops (else unchanged)."""
    sv, zv = _scalar(s), _scalar(z)
    x = expr.args[0]
    if expr.op.name == "relax.dequantize" and const_array(x) is not None:
        out = _dequantize_const(const_array(x), const_array(s).reshape(-1), const_array(z).reshape(-1),
                                int(expr.attrs.axis), str(expr.attrs.out_dtype))
        return relax.const(out)
    if sv is None or zv is None:
        return expr
    dt = str(expr.attrs.out_dtype)
    if expr.op.name == "relax.dequantize":
        y = relax.op.astype(x, "float32")
        if zv:
            y = relax.op.subtract(y, relax.const(float(zv), "float32"))
        y = relax.op.multiply(y, relax.const(sv, "float32"))
        return y if dt == "float32" else relax.op.astype(y, dt)
    info, ft = np.iinfo(dt), str(x.ty.dtype)
    y = relax.op.round(relax.op.divide(x, relax.const(sv, ft)))
    if zv:
        y = relax.op.add(y, relax.const(float(zv), ft))
    # maximum/minimum, not clip: ConvertLayout has no layout rule for clip (it would transpose around it)
    y = relax.op.minimum(relax.op.maximum(y, relax.const(float(info.min), ft)), relax.const(float(info.max), ft))
    return relax.op.astype(y, dt)


def lower_qdq(func: relax.Function) -> relax.Function:
    """Every quantize/dequantize with scalar (or constant-input) parameters → elementwise ops."""
    for op in ("relax.quantize", "relax.dequantize"):
        s, z = is_const(), is_const()
        func = rewrite_call(is_op(op)(wildcard(), s, z), lambda e, m, s=s, z=z: _elementwise(e, m[s], m[z]), func)
    return func


def _function_pass(fn, name: str) -> tvm.transform.Pass:
    return relax.transform.function_pass(lambda f, _mod, _ctx: fn(f), opt_level=0, name=name)


def to_integer() -> tvm.transform.Pass:
    """The whole rewrite: integer convs, elementwise Q/DQ, shared quantizes merged, dead code dropped."""
    return tvm.transform.Sequential([
        _function_pass(integer_convs, "segdeploy.IntegerConvs"),
        _function_pass(lower_qdq, "segdeploy.LowerQDQ"),
        relax.transform.EliminateCommonSubexpr(),
        relax.transform.DeadCodeElimination(),
    ], name="segdeploy.ToInteger")


def count_convs(mod: tvm.IRModule, predicate: Callable[[relax.Call], bool]) -> int:
    """conv2d / conv2d_transpose calls in the module's Relax functions for which `predicate` holds."""
    n = 0

    def visit(e):
        nonlocal n
        if isinstance(e, relax.Call) and getattr(e.op, "name", None) in CONV_OPS and predicate(e):
            n += 1
    for f in mod.functions.values():
        if isinstance(f, relax.Function):
            relax.analysis.post_order_visit(f, visit)
    return n


def count_integer_convs(mod: tvm.IRModule) -> int:
    """conv2d / conv2d_transpose calls with int32 results in the module's Relax functions."""
    return count_convs(mod, lambda call: str(call.attrs.out_dtype) == "int32")
