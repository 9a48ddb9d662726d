"""Where a model's time goes: wall time per compiled kernel (PrimFunc), from the Relax VM's call
instrumentation. A network slower than expected is explained by the few kernels that cost the time
(a conv on the generic schedule, a layout transpose around an op the NHWC pass fenced off)."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from deploy.runtime.model import Model


@dataclass(frozen=True)
class KernelTime:
    name: str
    calls: int     # per model run
    ms: float      # per model run, all its calls


def profile(model: Model, x: np.ndarray | dict, runs: int = 10, warmup: int = 2) -> list[KernelTime]:
    """Per-kernel time of `model.run(x)`, slowest first. VM builtins (allocation, shape checks)
    are left out; the instrumentation adds a few microseconds per call."""
    for _ in range(warmup):
        model.run(x)
    total, calls, started = defaultdict(float), defaultdict(int), {}

    def instrument(_func, symbol, before, _ret, *_args):
        if symbol.startswith("vm.builtin"):
            return 0
        if before:
            started[symbol] = time.perf_counter()
        else:
            total[symbol] += time.perf_counter() - started.pop(symbol)
            calls[symbol] += 1
        return 0

    model.vm.set_instrument(instrument)
    try:
        for _ in range(runs):
            model.run(x)
    finally:
        model.vm.set_instrument(None)
    return sorted((KernelTime(k, calls[k] // runs, 1e3 * v / runs) for k, v in total.items()),
                  key=lambda t: -t.ms)


def table(times: list[KernelTime], top: int = 15) -> str:
    """Markdown: the `top` slowest kernels with their share of the kernels' total."""
    whole = sum(t.ms for t in times) or 1.0
    rows = ["| kernel | calls | ms | share |", "|---|---|---|---|"]
    rows += [f"| {t.name} | {t.calls} | {t.ms:.3f} | {100 * t.ms / whole:.1f} % |" for t in times[:top]]
    return "\n".join(rows)
