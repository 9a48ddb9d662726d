"""exp, sigmoid, tanh and softmax on float32 through TOPI's polynomial exp (`topi.fast_exp`,
relative error 1.1e-6 measured over [-30, 30]; overflow and underflow as exp's).

LLVM has no vector exp on x86 without a vector math library: every `exp` (and so every sigmoid
head, SiLU/Swish gate, attention softmax) ran as one scalar libm call per element — a 1024 x 1024
softmax took 33 ms on one core. The polynomial vectorizes like any arithmetic. TVM's own
FastMathTransform covers exp/softmax/tanh but not sigmoid and does not look at the dtype; this
pass does both (fp16 tensors keep the exact ops: fast_exp is float32 only).
"""
from __future__ import annotations

import tvm
from tvm import relax, te, topi


def _fast_sigmoid(x: te.Tensor) -> te.Tensor:
    e = topi.fast_exp(topi.negative(x))
    return te.compute(x.shape, lambda *i: tvm.tirx.const(1.0, "float32") / (tvm.tirx.const(1.0, "float32") + e(*i)),
                      name="fast_sigmoid")


_FAST = {
    "relax.exp": lambda bb, call: bb.call_te(topi.fast_exp, call.args[0], primfunc_name_hint="fast_exp"),
    "relax.sigmoid": lambda bb, call: bb.call_te(_fast_sigmoid, call.args[0], primfunc_name_hint="fast_sigmoid"),
    "relax.tanh": lambda bb, call: bb.call_te(topi.fast_tanh, call.args[0], primfunc_name_hint="fast_tanh"),
    "relax.nn.softmax": lambda bb, call: bb.call_te(topi.nn.fast_softmax, call.args[0], int(call.attrs.axis),
                                                    primfunc_name_hint="fast_softmax"),
}


@relax.expr_functor.mutator
class _FastMath(relax.PyExprMutator):
    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        fast = _FAST.get(getattr(call.op, "name", None))
        if fast is None or str(getattr(call.ty, "dtype", "")) != "float32":
            return call
        return fast(self.builder_, call)


@tvm.transform.module_pass(opt_level=0, name="segdeploy.FastMath")
def FastMath(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 (pass naming)
    mutator = _FastMath(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()
