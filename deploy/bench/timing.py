"""Interleaved timing: engines take turns within each round, so a change in machine load hits
all of them alike and the ratios stay meaningful on a shared, noisy machine."""
from __future__ import annotations

import statistics
import time
from typing import Callable


SETTLE_S = 0.05


def interleaved(engines: dict[str, Callable[[], object]], runs: int, warmup: int = 2,
                settle_s: float = SETTLE_S) -> dict[str, list[float]]:
    """Seconds per call for each engine, `runs` rounds after `warmup` untimed rounds.

    Each timed call starts `settle_s` after the previous one ended, busy-waiting (a sleep would let
    the CPU idle and make the next call pay for waking up): an engine's thread pool keeps spinning
    after its run — onnxruntime's burns ~40 ms of a core (measured) — and without the pause that
    spin is charged to whichever engine is timed next (UNet b1: TVM 21.6 ms right after an
    onnxruntime run, 11.0 ms with onnxruntime's spinning off). The pause does not remove all of it
    (the same TVM suite read 99 ms right after onnxruntime and 46 ms elsewhere in the round, UNet
    b1, loaded machine), so the rounds also change order (round_orders): no engine always runs
    right after the same other one."""
    for _ in range(warmup):
        for fn in engines.values():
            fn()
    names = list(engines)
    orders = round_orders(len(names))
    times: dict[str, list[float]] = {name: [] for name in engines}
    for r in range(runs):
        for i in orders[r % len(orders)]:
            _busy_wait(settle_s)
            t = time.perf_counter()
            engines[names[i]]()
            times[names[i]].append(time.perf_counter() - t)
    return times


def round_orders(n: int) -> list[list[int]]:
    """A balanced Latin square (Williams design) on n engines: every engine takes every place in
    the round equally often and runs right after every other engine equally often (once in the n
    orders for even n, twice in the 2n for odd n). Cyclic rotation would not do: it keeps each
    engine's successor."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


def _busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3
