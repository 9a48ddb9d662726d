"""Graph-level rewrites before legalization: BN folding, NHWC layout, numpy constant folding.

relax.transform.FoldConstant compiles one kernel per distinct constant op (5 s on a small
UNet); weights only ever go through transposes, reshapes, casts and BN arithmetic, so those
are evaluated here in numpy instead (milliseconds).
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, is_tuple_get_item, rewrite_call, wildcard

NHWC = {"relax.nn.conv2d": ["NHWC", "HWIO"], "relax.nn.conv2d_transpose": ["NHWC", "IOHW"]}


def _np(c) -> np.ndarray:
    return c.value.numpy()


def _const(a: np.ndarray):
    return relax.const(np.ascontiguousarray(a))


def _shape(s) -> list[int]:
    return [int(v) for v in s.values]


# op -> (number of constant args, numpy implementation taking (arrays, call))
_EVAL = {
    "relax.permute_dims": (1, lambda a, c: np.transpose(a[0], None if c.attrs.axes is None
                                                        else [int(x) for x in c.attrs.axes])),
    "relax.reshape": (1, lambda a, c: a[0].reshape(_shape(c.args[1]))),
    "relax.expand_dims": (1, lambda a, c: np.expand_dims(a[0], tuple(int(x) for x in c.attrs.axis))),
    "relax.astype": (1, lambda a, c: a[0].astype(str(c.attrs.dtype))),
    "relax.add": (2, lambda a, c: a[0] + a[1]),
    "relax.subtract": (2, lambda a, c: a[0] - a[1]),
    "relax.multiply": (2, lambda a, c: a[0] * a[1]),
    "relax.divide": (2, lambda a, c: a[0] / a[1]),
    "relax.sqrt": (1, lambda a, c: np.sqrt(a[0])),
}


@relax.expr_functor.mutator
class _NumpyFolder(relax.PyExprMutator):
    """One post-order pass: an `_EVAL` op whose tensor arguments are constants becomes one."""

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        k, fn = _EVAL.get(getattr(call.op, "name", None), (0, None))
        if fn is None:
            return call
        arrays = [_const_value(self, a) for a in call.args[:k]]
        if any(a is None for a in arrays):
            return call
        try:
            out = np.asarray(fn(arrays, call))
        except (AttributeError, TypeError, ValueError):  # e.g. a reshape to a symbolic shape
            return call
        if call.op.name != "relax.astype":
            out = out.astype(arrays[0].dtype)  # numpy scalar promotion must not widen
        return _const(out)


def _const_value(mutator, e) -> np.ndarray | None:
    """The numpy value of `e` when it is (bound to) a constant, else None."""
    if isinstance(e, relax.Var):
        e = mutator.lookup_binding(e)
    value = getattr(e, "value", None)
    return value.numpy() if isinstance(value, tvm.runtime.Tensor) else None


_BROADCAST = {f"relax.{op}" for op in ("add", "subtract", "multiply", "divide", "power", "maximum", "minimum",
                                        "floor_divide", "greater", "less", "greater_equal", "less_equal", "equal")}


@relax.expr_functor.mutator
class _RankExpander(relax.PyExprMutator):
    """A constant operand of lower rank than its partner (ONNX broadcasting: a (C, 1, 1) PRelu
    slope or InstanceNorm scale against (N, C, H, W)) gets the leading 1s made explicit: the
    layout pass can only convert same-rank operands to NHWC and otherwise fences the whole op in
    NCHW behind two transposes."""

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if getattr(call.op, "name", None) not in _BROADCAST or len(call.args) != 2:
            return call
        ranks = [getattr(a.ty, "ndim", -1) for a in call.args]
        if min(ranks) < 0 or ranks[0] == ranks[1]:
            return call
        args = list(call.args)
        low = int(ranks[1] < ranks[0])
        value = _const_value(self, args[low])
        if value is None:
            return call
        args[low] = _const(value.reshape((1,) * abs(ranks[0] - ranks[1]) + value.shape))
        return relax.Call(call.op, args, call.attrs, call.ty_args)


def expand_const_ranks(func: relax.Function) -> relax.Function:
    return _RankExpander().visit_expr(func)


def fold_constants(func: relax.Function) -> relax.Function:
    """Evaluate the ops of `_EVAL` whose tensor arguments are all constants, in numpy."""
    return _NumpyFolder().visit_expr(func)


def fold_batch_norm(func: relax.Function) -> relax.Function:
    """conv2d(x, W) [+ b] -> batch_norm (inference) becomes conv2d(x, W*s) + (b - mean)*s + beta."""
    x, w, b = wildcard(), is_const(), is_const()
    conv = is_op("relax.nn.conv2d")(x, w)
    gamma, beta, mean, var = is_const(), is_const(), is_const(), is_const()
    biased = is_op("relax.add")(conv, b)
    bn = is_op("relax.nn.batch_norm")(biased | conv, gamma, beta, mean, var)
    pattern = is_tuple_get_item(bn, 0)

    def rewriter(expr, m):
        c = m[conv]
        attrs = c.attrs
        axis = attrs.kernel_layout.index("O")
        bn_call = m[bn]
        if int(bn_call.attrs.axis) != attrs.out_layout.index("C") or bn_call.attrs.training:
            return expr
        scale = _np(m[gamma]) / np.sqrt(_np(m[var]) + float(bn_call.attrs.epsilon))
        wt = _np(m[w])
        shp = [1] * wt.ndim
        shp[axis] = -1
        bias = _np(m[b]).reshape(-1) if b in m else 0.0
        shift = (bias - _np(m[mean])) * scale + _np(m[beta])
        oshp = [1] * 4
        oshp[attrs.out_layout.index("C")] = -1
        new_conv = relax.Call(c.op, [m[x], _const((wt * scale.reshape(shp)).astype(wt.dtype))],
                              attrs)
        return relax.op.add(new_conv, _const(shift.reshape(oshp).astype(wt.dtype)))

    return rewrite_call(pattern, rewriter, func)


def fold_pad_transposes(func: relax.Function) -> relax.Function:
    """ConvertLayout has no layout rule for nn.pad: it keeps a pad in the original layout between
    two transposes (NHWC → NCHW, pad, → NHWC). Pad the NHWC tensor directly instead."""
    x = wildcard()
    inner = is_op("relax.permute_dims")(x)
    pad = is_op("relax.nn.pad")(inner)
    pattern = is_op("relax.permute_dims")(pad)

    def rewriter(expr, m):
        p, q = m[inner].attrs.axes, expr.attrs.axes
        if p is None or q is None or [int(p[int(k)]) for k in q] != list(range(len(p))):
            return expr
        a, widths = m[pad].attrs, [0] * (2 * len(p))
        for j, axis in enumerate(int(v) for v in p):   # pad axis j is axis p[j] of x
            widths[2 * axis:2 * axis + 2] = [int(v) for v in a.pad_width[2 * j:2 * j + 2]]
        return relax.op.nn.pad(m[x], widths, str(a.pad_mode), float(a.pad_value))

    return rewrite_call(pattern, rewriter, func)


def _per_function(fn):
    @tvm.transform.module_pass(opt_level=0, name=fn.__name__)
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        out = tvm.IRModule(mod.functions, attrs=mod.attrs)
        for gv, f in mod.functions.items():
            if isinstance(f, relax.Function):
                out[gv] = fn(f)
        return out
    return _pass


FoldConstantsNumpy = _per_function(fold_constants)
ExpandConstRanks = _per_function(expand_const_ranks)
FoldBatchNorm = _per_function(fold_batch_norm)
FoldPadTransposes = _per_function(fold_pad_transposes)


def graph_passes(nhwc: bool = True) -> list[tvm.transform.Pass]:
    """BN folding, NHWC conversion and weight-transform folding, in order. nhwc=False keeps the
    graph's NCHW layout (convs then get TVM's generic kernels): the fallback for a graph that
    relax's ConvertLayout cannot take."""
    convert = [relax.transform.ConvertLayout(NHWC), FoldPadTransposes] if nhwc else []
    return [
        FoldConstantsNumpy,            # bias reshapes, so the BN pattern sees constants
        relax.transform.CanonicalizeBindings(),
        FoldBatchNorm,
        relax.transform.DecomposeOpsForInference(),   # BNs not after a conv
        FoldConstantsNumpy,            # the decomposition's reshapes of constant scales
        ExpandConstRanks,
        *convert,
        FoldConstantsNumpy,            # OIHW -> HWIO weight transposes
        relax.transform.CanonicalizeBindings(),
        relax.transform.DeadCodeElimination(),
    ]


def to_nhwc(mod: tvm.IRModule, log) -> tvm.IRModule:
    """The graph passes; when TVM's layout pass fails on an op it cannot convert, the graph is
    kept in NCHW (correct, slower) and the log says why, instead of ending the compile."""
    try:
        return tvm.transform.Sequential(graph_passes())(mod)
    except RuntimeError as e:  # TVM's InternalError (a RuntimeError) from an op it cannot convert
        first = str(e).strip().splitlines()[-1][:300]
        log(f"optimize: WARNING the NHWC layout pass failed ({type(e).__name__}: {first}); the graph stays "
            f"NCHW with generic conv kernels (correct, slower)")
        return tvm.transform.Sequential(graph_passes(nhwc=False))(mod)
