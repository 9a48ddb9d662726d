"""Our replacements for a few of TVM's Relax ONNX converters (a plain registry: ONNX op -> class).

- `Pad`, `Clip`, `Tile`: the frontend emits these as opaque `call_tir`s (topi through emit_te),
  which the NHWC layout pass can only fence with transposes and which ToMixedPrecision rejects
  ("Expected TensorType, but got R.Callable": fp16 builds crashed on edge/reflect pads and on
  ReLU6-style clips). Ours emit the Relax ops (`nn.pad` with its mode, `maximum`/`minimum`,
  `tile`), which both passes understand and which legalize to the same topi kernels.
- `Sum`/`Max`/`Min`/`Mean`: the frontend stacks static-shape inputs into a 5-D tensor and
  reduces it, which ConvertLayout cannot convert ("Invalid SLayout ... ABCDE"); ours always take
  the frontend's own pairwise form (same semantics: ONNX broadcasting is multidirectional).
Used only while importing (`overrides()`); the frontend's own table is restored afterwards.
Converters we keep still emit `relax.clip` with PrimValue bounds (HardSigmoid, HardSwish: the
MobileNetV3 tails), whose bound arguments ToMixedPrecision rejects ("Expected TensorType, but got
T.int64"); `clip_as_min_max` rewrites every such clip in the imported module the way our Clip does.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as F

_PAD_MODES = {"constant": "constant", "edge": "replicate", "reflect": "reflect", "wrap": "circular"}


class Pad(F.Pad):
    @classmethod
    def _lower_pad(cls, bb, inputs, attr, params, allowed_modes):
        before, after, value = cls._parse_pads_and_axes(inputs, params)
        mode = attr.get("mode", b"constant").decode("utf-8")
        if mode not in allowed_modes:
            raise ValueError(f"Pad mode {mode!r} is not valid in this opset (accepted: {sorted(allowed_modes)})")
        widths = [int(v) for pair in zip(before, after) for v in pair]
        return relax.op.nn.pad(inputs[0], widths, _PAD_MODES[mode], float(value))

    @classmethod
    def _impl_v2(cls, bb, inputs, attr, params):
        pads = [int(p) for p in attr.get("pads")]
        half = len(pads) // 2
        widths = [v for pair in zip(pads[:half], pads[half:]) for v in pair]
        mode = attr.get("mode", b"constant").decode("utf-8")
        if mode not in ("constant", "edge", "reflect"):
            raise ValueError(f"Pad mode {mode!r} is not valid in opset 2")
        return relax.op.nn.pad(inputs[0], widths, _PAD_MODES[mode], float(attr.get("value", 0.0)))


class Clip(F.Clip):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x = inputs[0]
        lo = relax.const(float(attr.get("min", -np.inf)), x.ty.dtype)
        hi = relax.const(float(attr.get("max", np.inf)), x.ty.dtype)
        return relax.op.minimum(relax.op.maximum(x, lo), hi)

    @classmethod
    def _impl_v13(cls, bb, inputs, attr, params):
        out = inputs[0]
        if inputs[1] is not None:
            out = relax.op.maximum(out, cls._bound(bb, inputs[1], for_min=True))
        if inputs[2] is not None:
            out = relax.op.minimum(out, cls._bound(bb, inputs[2], for_min=False))
        return out

    @classmethod
    def _bound(cls, bb, bound, for_min: bool):
        """A NaN bound means no bound (ONNX); a constant one is resolved now (ReLU6's 0 and 6), so
        no isnan/where runs per element in the conv epilogue."""
        if isinstance(bound, tvm.ir.GenericConst):
            value = bound.value.numpy()
            return relax.const(np.where(np.isnan(value), -np.inf if for_min else np.inf, value), value.dtype)
        return cls._sanitize_nan_clip_bound(bb, bound, for_min=for_min)


class Tile(F.Tile):
    @classmethod
    def _impl_v13(cls, bb, inputs, attr, params):
        reps = F.get_constant(inputs[1], params)
        if isinstance(reps, tvm.ir.GenericConst):
            return relax.op.tile(inputs[0], [int(r) for r in reps.value.numpy()])
        return super()._impl_v13(bb, inputs, attr, params)


def _spatial_sizes(inputs):
    """Resize `sizes` written as Shape(x)[0:2] ++ [H, W] (torch.onnx's `F.interpolate(size=...)`)
    arrive as R.shape([N, C, H, W]) with a symbolic N, which the frontend cannot turn into ints; it
    only reads the spatial entries, so those are what is kept."""
    sizes = inputs[3] if len(inputs) > 3 else None
    if not isinstance(sizes, relax.ShapeExpr) or not all(isinstance(v, tvm.tirx.IntImm) for v in sizes.values[2:]):
        return inputs
    return [*inputs[:3], relax.ShapeExpr([1, 1, *sizes.values[2:]]), *inputs[4:]]


class Resize(F.Resize):
    @classmethod
    def _impl_v18(cls, bb, inputs, attr, params):
        return super()._impl_v18(bb, _spatial_sizes(inputs), attr, params)

    @classmethod
    def _impl_v20(cls, bb, inputs, attr, params):
        return super()._impl_v20(bb, _spatial_sizes(inputs), attr, params)


def _pairwise(base):
    """The frontend's converter with its stack-and-reduce path replaced by the pairwise one."""
    return type(base.__name__, (base,), {"_impl_v1": classmethod(lambda cls, bb, inputs, attr, params:
                                                                   cls._impl_dynamic(bb, inputs))})


CONVERTERS = {"Pad": Pad, "Clip": Clip, "Tile": Tile, "Resize": Resize,
              **{op: _pairwise(getattr(F, op)) for op in ("Sum", "Max", "Min", "Mean")}}


@relax.expr_functor.mutator
class _ClipAsMinMax(relax.PyExprMutator):
    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if getattr(call.op, "name", None) != "relax.clip":
            return call
        x, lo, hi = call.args
        dtype = str(call.ty.dtype)
        return relax.op.minimum(relax.op.maximum(x, relax.const(_prim(lo), dtype)), relax.const(_prim(hi), dtype))


def _prim(bound: relax.PrimValue) -> float:
    value = bound.value  # an IntImm/FloatImm, or already a Python number
    return float(getattr(value, "value", value))


def clip_as_min_max(mod: tvm.IRModule) -> tvm.IRModule:
    """Every `relax.clip(x, lo, hi)` of `mod` as maximum/minimum with tensor constants (see the module
    docstring: the PrimValue bounds break ToMixedPrecision)."""
    mutator = _ClipAsMinMax(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()


@contextlib.contextmanager
def overrides() -> Iterator[None]:
    """While active, the frontend converts the ops of CONVERTERS with our classes."""
    original = F._get_convert_map

    def convert_map():
        table = original()
        table.update(CONVERTERS)
        return table

    F._get_convert_map = convert_map
    try:
        yield
    finally:
        F._get_convert_map = original
