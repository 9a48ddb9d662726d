"""Benchmark timing: engines take turns, and each timed call starts only after the pause that lets
the previous engine's spinning thread pool go quiet."""
from __future__ import annotations

import time

from deploy.bench.timing import interleaved


def test_interleaved_takes_turns_and_pauses_before_each_timed_call():
    starts: list[tuple[str, float]] = []

    def engine(name: str):
        return lambda: starts.append((name, time.perf_counter()))
    times = interleaved({"a": engine("a"), "b": engine("b")}, runs=3, warmup=1, settle_s=0.02)
    assert [n for n, _ in starts] == ["a", "b"] * 4
    timed = [t for _, t in starts[2:]]
    assert all(later - earlier >= 0.02 for earlier, later in zip(timed, timed[1:]))
    assert sorted(times) == ["a", "b"] and all(len(v) == 3 and min(v) >= 0 for v in times.values())
