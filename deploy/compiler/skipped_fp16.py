"""int8 builds with `backend.quantize.skip_dtype: fp16`: the convs the int8 plan keeps in float
(deploy.quantize.planner: the image-input conv, 1-channel heads, skip_* keys) compute in fp16.

The QDQ model gives such a conv no QuantizeLinear/DequantizeLinear at all, so in the imported
(NCHW) Relax module it is the one conv whose weight is a plain float32 constant — a quantized conv's
weight is `dequantize(int8 constant)`. `to_fp16(accumulate)` rewrites exactly those, before
deploy.compiler.qdq_to_integer turns the dequantized weights of the others into constants:

    conv2d(x, W)  →  conv2d(astype(x, float16), W as float16, out_dtype=accumulate) [→ astype float32]

which is what an fp16 build's ToMixedPrecision makes of a conv: activations and weights in fp16,
accumulated in `accumulate` (deploy.compiler.backend.cpu.fp16_accumulate: float16 where the CPU has
AVX512-FP16, else float32 in registers). The result is float32 again, since the bias add and the
next layer's quantize that follow work in float32; the CPU backend gives the conv its fp16 kernel.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from deploy.compiler.qdq_to_integer import CONV_OPS, const_array, count_convs

FP16 = "float16"


def _conv(op: str, x: relax.Expr, w: relax.Expr, a, out_dtype: str) -> relax.Expr:
    """The same conv as attrs `a` describe, on new operands and with `out_dtype`."""
    common = {"strides": a.strides, "padding": a.padding, "dilation": a.dilation, "groups": int(a.groups),
              "data_layout": a.data_layout, "kernel_layout": a.kernel_layout, "out_layout": a.out_layout,
              "out_dtype": out_dtype}
    if op == "relax.nn.conv2d_transpose":
        return relax.op.nn.conv2d_transpose(x, w, output_padding=a.output_padding, **common)
    return relax.op.nn.conv2d(x, w, **common)


def _to_fp16(expr: relax.Call, weight: relax.Expr, accumulate: str) -> relax.Expr:
    """One float32 conv with a constant float32 weight in fp16 (else `expr` unchanged)."""
    x = expr.args[0]
    w = const_array(weight)
    if w is None or w.dtype != np.float32 or str(x.ty.dtype) != "float32":
        return expr
    y = _conv(expr.op.name, relax.op.astype(x, FP16), relax.const(w.astype(np.float16)), expr.attrs, accumulate)
    return y if accumulate == "float32" else relax.op.astype(y, "float32")


def skipped_convs_to_fp16(func: relax.Function, accumulate: str) -> relax.Function:
    """Every conv2d / conv2d_transpose whose weight is a float32 constant → its fp16 form."""
    for op in CONV_OPS:
        w = is_const()
        func = rewrite_call(is_op(op)(wildcard(), w), lambda e, m, w=w: _to_fp16(e, m[w], accumulate), func)
    return func


def to_fp16(accumulate: str) -> tvm.transform.Pass:
    """The rewrite as a pass over the module's Relax functions (run before qdq_to_integer.to_integer)."""
    if accumulate not in ("float16", "float32"):
        raise ValueError(f"accumulate must be float16 or float32, got {accumulate!r}")
    return relax.transform.function_pass(lambda f, _mod, _ctx: skipped_convs_to_fp16(f, accumulate),
                                         opt_level=0, name="segdeploy.SkippedConvsToFP16")


def count_fp16_convs(mod: tvm.IRModule) -> int:
    """conv2d / conv2d_transpose calls on float16 operands in the module's Relax functions."""
    return count_convs(mod, lambda call: all(str(a.ty.dtype) == FP16 for a in call.args[:2]))
