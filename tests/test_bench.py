"""Benchmark timing: engines take turns, each timed call starts only after the pause that lets the
previous engine's spinning thread pool go quiet, and the order changes from round to round so no
engine always runs right after the same other one (counted on fake engines, never timed)."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from deploy.bench.timing import interleaved, round_orders


def _recording(names):
    calls: list[tuple[str, float]] = []
    return calls, {n: (lambda n=n: calls.append((n, time.perf_counter()))) for n in names}


def test_interleaved_pauses_before_each_timed_call():
    calls, engines = _recording("ab")
    times = interleaved(engines, runs=3, warmup=1, settle_s=0.02)
    assert [n for n, _ in calls[:2]] == ["a", "b"]
    timed = [t for _, t in calls[2:]]
    assert all(later - earlier >= 0.02 for earlier, later in zip(timed, timed[1:]))
    assert sorted(times) == ["a", "b"] and all(len(v) == 3 and min(v) >= 0 for v in times.values())


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_every_engine_follows_every_other_equally_often(n):
    names = "abcdef"[:n]
    runs = len(round_orders(n))
    calls, engines = _recording(names)
    interleaved(engines, runs=runs, warmup=0, settle_s=0)
    rounds = [[c for c, _ in calls[r * n:(r + 1) * n]] for r in range(runs)]
    assert all(sorted(r) == list(names) for r in rounds)               # every engine once per round
    follows = Counter((r[i], r[i + 1]) for r in rounds for i in range(n - 1))
    assert set(follows) == {(a, b) for a in names for b in names if a != b}
    assert len(set(follows.values())) == 1                             # balanced: no successor favoured
    places = Counter((name, i) for r in rounds for i, name in enumerate(r))
    assert len(places) == n * n and len(set(places.values())) == 1     # every engine in every place alike


def test_more_runs_than_orders_keep_cycling():
    calls, engines = _recording("abc")
    times = interleaved(engines, runs=8, warmup=0, settle_s=0)
    assert all(len(v) == 8 for v in times.values()) and len(calls) == 24


def test_label_agreement_argmax_for_classes_sign_for_one():
    import numpy as np
    from deploy.bench.engines import label_agreement
    a = np.zeros((1, 3, 2, 2), np.float32)
    a[0, 1] = 1.0                               # class 1 everywhere
    b = a.copy()
    b[0, 2, 0, 0] = 2.0                         # one pixel becomes class 2
    assert label_agreement([a], [b]) == 0.75
    one = np.array([[[[1.0, -1.0], [0.5, -0.5]]]], np.float32)
    assert label_agreement([one], [one * 3]) == 1.0 and label_agreement([one], [-one]) == 0.0


def test_rel_max_abs_is_relative_only_above_one():
    import numpy as np
    from deploy.bench.engines import rel_max_abs
    assert rel_max_abs([np.array([0.5])], [np.array([0.25])]) == 0.25
    assert rel_max_abs([np.array([200.0])], [np.array([199.0])]) == 1 / 200
