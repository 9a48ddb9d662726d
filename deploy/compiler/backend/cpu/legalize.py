"""Which kernel a conv gets: ONE dispatch table, per Relax op, read by LegalizeOps.

`RULES[op]` lists (kernel, applies, lower) in priority order; the first rule whose `applies(call,
options)` holds lowers the call (a plain dict registry, as onnxruntime's quantization registry maps
op types to their quantizers). The order matters: the rewrite's integer convs (deploy.compiler.
qdq_to_integer) are packable too and must reach VNNI before the float kernels; Winograd only takes
convs the direct kernel could also take. The kernel modules know how to lower; only this table
decides, so none of them imports another to dispatch.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import tvm

from . import conv2d, conv2d_transpose, int8, winograd
from .packing import packable

CONV2D = "relax.nn.conv2d"
CONV2D_TRANSPOSE = "relax.nn.conv2d_transpose"


class Options(NamedTuple):
    """Pipeline choices a rule may read. winograd_min: 3x3 stride-1 convs whose output sides are
    >= this use Winograd; None: never."""
    winograd_min: int | None = None


class Rule(NamedTuple):
    kernel: str                                 # what the call becomes (for readers and logs)
    applies: Callable[[object, Options], bool]  # (relax call, options) -> take it?
    lower: Callable                             # (block builder, relax call) -> legalized expr


def _always(_call, _options: Options) -> bool:
    return True


def _topi(op_name: str):
    """TVM's own legalization of `op_name` (TOPI compute, scheduled by schedule.generic)."""
    return lambda bb, call: tvm.ir.Op.get(op_name).get_attr("FLegalize")(bb, call)


RULES: dict[str, tuple[Rule, ...]] = {
    CONV2D: (
        Rule("int8 VNNI", lambda call, _: int8.is_int8_conv(call), int8.legalize_conv2d),
        Rule("winograd", lambda call, o: bool(o.winograd_min) and packable(call, "HWIO")
             and winograd.fits(call, o.winograd_min), winograd.legalize),
        Rule("direct packed", lambda call, _: packable(call, "HWIO"), conv2d.legalize),
        Rule("grouped packed", lambda call, _: packable(call, "HWIO", grouped=True), conv2d.legalize_grouped),
        Rule("generic", _always, _topi(CONV2D)),
    ),
    CONV2D_TRANSPOSE: (
        Rule("int8 VNNI", lambda call, _: int8.is_int8_upconv(call), int8.legalize_conv2d_transpose),
        Rule("conv2d_transpose packed", lambda call, _: packable(call, "IOHW"), conv2d_transpose.legalize),
        Rule("generic", _always, conv2d_transpose.legalize_generic),
    ),
}


def rule_for(op_name: str, call, options: Options) -> Rule:
    """The first rule of `op_name` that applies to `call` (every op's last rule always does)."""
    return next(r for r in RULES[op_name] if r.applies(call, options))


def _dispatch(op_name: str, options: Options, bb, call):
    return rule_for(op_name, call, options).lower(bb, call)


def legalize_map(options: Options) -> dict[str, Callable]:
    """LegalizeOps' customize_legalize_map: each op of the table through its rules."""
    return {op: partial(_dispatch, op, options) for op in RULES}
