"""The fast TVM CPU backend: NHWC, packed-weight direct and Winograd convs, hand schedules.

layout.py (NHWC graph passes) -> fast_math.py (vector exp) -> legalize.py (which conv kernel: conv2d,
grouped, conv2d_transpose, int8, winograd on packing.py) -> schedule.py (hand schedules per kernel kind).

    target = host_target()
    mod = relax.frontend.onnx.from_onnx(model)           # shape_dict=None keeps the symbolic batch
    mod = optimize(mod, target, "fp32")                  # or "fp16", or "int8" after deploy.compiler.qdq_to_integer
    ex = tvm.compile(mod, target, relax_pipeline=relax_pipeline())
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import tvm
from tvm import relax

from deploy.compiler.target import host_target
from deploy.errors import DeployError
from deploy.runtime.model import Model

from . import fast_math, layout, legalize, schedule
from .target import has_features, vector_bits

__all__ = ["optimize", "pipeline", "relax_pipeline", "verify", "host_target", "DTYPES", "PIPELINE",
           "DEVICE"]

PIPELINE = "deploy.compiler.backend.cpu"   # what mod.json's "pipeline" records
DEVICE = "cpu"                             # mod.json "device": what the runtime opens

DTYPES = ("fp32", "fp16", "int8")   # int8: integer convs (deploy.compiler.qdq_to_integer.to_integer), the rest fp32
WINOGRAD_MIN = 24


def fp16_accumulate(target: tvm.target.Target) -> str:
    """fp16 models accumulate in fp16 where the CPU has fp16 arithmetic (AVX512-FP16); elsewhere
    (e.g. znver4) LLVM emulates each fp16 op (6x slower than fp32), so activations and weights
    are stored in fp16 and converted in registers for fp32 FMAs."""
    return "float16" if has_features(target, "avx512fp16") else "float32"


def pipeline(target: tvm.target.Target, dtype: str = "fp32",
             winograd_min: int | None = WINOGRAD_MIN) -> tvm.transform.Pass:
    """Relax passes that turn an imported (NCHW, BN, fp32) module into a scheduled one.
    winograd_min: 3x3 stride-1 convs whose output sides are >= this use Winograd F(4x4,3x3)
    (2.7-3.2x faster per layer; the transformed weights are 4x larger); None: never."""
    return tvm.transform.Sequential(layout.graph_passes() + lowering_passes(target, dtype, winograd_min),
                                    name="segdeploy.cpu")


def lowering_passes(target: tvm.target.Target, dtype: str = "fp32",
                    winograd_min: int | None = WINOGRAD_MIN) -> list[tvm.transform.Pass]:
    """After the graph passes: precision, legalization through legalize.py's table, fusion, schedules."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    passes = []
    if dtype == "fp16":
        passes += [relax.transform.ToMixedPrecision(out_dtype=fp16_accumulate(target)),
                   layout.FoldConstantsNumpy, relax.transform.CanonicalizeBindings()]
    passes += [
        fast_math.FastMath,
        relax.transform.LegalizeOps(customize_legalize_map=legalize.legalize_map(legalize.Options(winograd_min))),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
        schedule.SchedulePrimFuncs(vector_bits(target) // 32),
    ]
    return passes


def optimize(mod: tvm.IRModule, target: tvm.target.Target, dtype: str = "fp32",
             winograd_min: int | None = WINOGRAD_MIN, log: Callable[[str], None] = lambda msg: None) -> tvm.IRModule:
    """Apply `pipeline(...)` under the target; the result goes to
    `tvm.compile(mod, target, relax_pipeline=relax_pipeline())`. `log` gets which schedule each
    kernel got (compile.log: a conv that fell back to "generic" shows there)."""
    log(f"optimize: deploy.compiler.backend.cpu.optimize ({dtype})")
    with target:
        mod = layout.to_nhwc(mod, log)
        mod = tvm.transform.Sequential(lowering_passes(target, dtype, winograd_min))(mod)
    kinds = Counter(str(f.attrs["segdeploy.schedule"]) for f in mod.functions.values()
                    if isinstance(f, tvm.tirx.PrimFunc) and "segdeploy.schedule" in f.attrs)
    log("optimize: schedules " + ", ".join(f"{k}×{n}" for k, n in sorted(kinds.items())))
    return mod


@tvm.transform.module_pass(opt_level=0, name="segdeploy.MarkNoAlias")
def _mark_noalias(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """The VM's shape_func (symbolic batch) lacks tirx.noalias; TVM's LLVM codegen then drops
    the alias info of every kernel named before it, and LLVM keeps conv accumulators in memory
    (2.4x slower fp16). Its single buffer cannot alias: mark it."""
    out = tvm.IRModule(mod.functions, attrs=mod.attrs)
    for gv, f in mod.functions.items():
        if (isinstance(f, tvm.tirx.PrimFunc) and not f.attrs.get("tirx.noalias", False)
                and len(f.params) <= 1):
            out[gv] = f.with_attr("tirx.noalias", True)
    return out


def relax_pipeline() -> tvm.transform.Pass:
    """tvm.compile's default Relax pipeline plus the shape_func alias fix above."""
    return tvm.transform.Sequential([relax.get_pipeline("default"), _mark_noalias])


def verify(prefix: Path, target: tvm.target.Target, ex, log: Callable[[str], None], runs_here: bool) -> None:
    """Run the exported library once through the runtime, on a zero batch of the first compiled
    size, when this CPU can run the target's code (`target` and `ex` are not needed: the runtime
    loads what was exported). Nothing goes to mod.json's device_code (None)."""
    if not runs_here:
        log("verify: skipped (the target's code cannot run on this CPU)")
        return None
    m = Model(prefix)
    n = (m.meta["batch_sizes"] or [1])[0]
    x = {i.name: np.zeros((n,) + tuple(i.shape[1:]), np.float32) for i in m.inputs}
    t0 = time.perf_counter()
    outs = m.run(x)
    log(f"verify: batch {n} of zeros ran in {time.perf_counter() - t0:.3f}s (first run)")
    for info, o in zip(m.outputs, outs):
        want = tuple(n if d is None else d for d in info.shape)
        if o.shape != want:
            raise DeployError(f"verify: output {info.name} has shape {o.shape}, expected {want} (internal error)")
        if not np.isfinite(o).all():
            log(f"verify: WARNING output {info.name} has non-finite values for a zero input")
    return None
