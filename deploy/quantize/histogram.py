"""|x| histograms of activations: a two-pass one with a fixed memory footprint, and the final
`Histogram` the threshold searches work on.

Why two passes: the searches assume the one-shot histogram `num_bins` bins over [0, max|x|] of
all calibration values, and max|x| is only known after the last batch. A single streaming pass
has to rebin what it saw under a smaller range, which moves samples across bin edges; the KL
curve is flat near its minimum, so those small moves shifted entropy thresholds by up to 169 bins
on mini_unet (6 batches, range growing 17x). `StreamingHistogram` therefore sees the batches
twice: `observe()` collects min/max/count, then `add()` bins every value with the final range,
by the same function (`bin_counts`) as `Histogram.from_array`, so the result IS the one-shot
histogram, bin for bin. Memory: `num_bins` int64 counts per tensor, whatever the number of images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def bin_counts(x: np.ndarray, amax: float, num_bins: int) -> np.ndarray:
    """Counts of |x| in bins [k w, (k+1) w), w = amax / num_bins; |x| == amax goes to the last bin."""
    if amax == 0.0:
        counts = np.zeros(num_bins, np.int64)
        counts[0] = x.size
        return counts
    k = (np.abs(np.asarray(x, dtype=np.float64).ravel()) * (num_bins / amax)).astype(np.intp)
    return np.bincount(np.minimum(k, num_bins - 1), minlength=num_bins).astype(np.int64)


@dataclass(frozen=True)
class Histogram:
    """`counts[k]` samples with |x| in [k*width, (k+1)*width); the last bin also holds |x| == amax."""
    counts: np.ndarray  # int64, shape (num_bins,)
    amax: float         # max |x| seen; the histogram spans [0, amax]

    @property
    def num_bins(self) -> int:
        return len(self.counts)

    @property
    def width(self) -> float:
        return self.amax / self.num_bins

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def from_array(cls, x: np.ndarray, num_bins: int = 2048) -> "Histogram":
        """One-shot histogram of |x| (what the two passes of StreamingHistogram reproduce)."""
        x = np.asarray(x)
        amax = float(np.abs(x).max()) if x.size else 0.0
        return cls(bin_counts(x, amax, num_bins), amax)


class StreamingHistogram:
    """Min, max and count of one tensor (pass 1, `observe`), then its |x| histogram (pass 2, `add`)."""

    def __init__(self, num_bins: int = 2048):
        if num_bins < 1:
            raise ValueError("num_bins must be >= 1")
        self.num_bins = num_bins
        self.counts = np.zeros(num_bins, np.int64)
        self.min = math.inf
        self.max = -math.inf
        self.total = 0   # values observed in pass 1
        self.added = 0   # values binned in pass 2

    @property
    def amax(self) -> float:
        return max(-self.min, self.max, 0.0) if self.total else 0.0

    def observe(self, x: np.ndarray) -> None:
        """Pass 1: fold the values of `x` (any shape) into min/max. Raises ValueError on NaN or infinity."""
        x = np.asarray(x)
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("non-finite values (NaN or inf)")
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.total += x.size

    def add(self, x: np.ndarray) -> None:
        """Pass 2: bin the values of `x` with the range pass 1 found."""
        x = np.asarray(x)
        if self.added + x.size > self.total:
            raise ValueError("more values than the first pass saw (the batches changed between passes)")
        self.counts += bin_counts(x, self.amax, self.num_bins)
        self.added += x.size

    def finalize(self) -> Histogram:
        if self.added != self.total:
            raise ValueError(f"pass 2 binned {self.added} of the {self.total} values pass 1 saw")
        return Histogram(self.counts.copy(), self.amax)
