"""|x| histograms of activations: a streaming one with a fixed memory footprint, and the final
`Histogram` the threshold search works on.

Streaming rebinning (how early batches survive a growing range)
----------------------------------------------------------------
`StreamingHistogram` keeps `num_bins * upsample` fine bins (int64, allocated once) over
[0, range). The first batch sets `range` to its max |x|. When a later batch has a larger max |x|,
the range is doubled as often as needed (k times) and every 2**k adjacent fine bins are merged
into one: counts are never interpolated or dropped, they only become coarser. After any number
of batches `range / 2 < max|x| <= range`, so at least half the fine bins cover data.

`finalize()` then maps the fine bins onto exactly `num_bins` bins over [0, max|x|] (the one-shot
histogram the calibrators assume): each fine bin goes, whole, to the final bin containing its
centre. A fine bin is at most 2/upsample of a final bin wide, so a sample lands at most one final
bin away from where a one-shot `np.histogram(|x|, num_bins, (0, max|x|))` puts it, and only
samples within half a fine bin of a final edge move at all.

Memory does not depend on the number of images: 2048 x 16 fine bins = 256 KiB per tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UPSAMPLE = 16
_SHRINK = 1.0 - 2.0 ** -20  # keeps float32 rounding of range * n / range below n


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
        """One-shot histogram of |x| (the reference the streaming one approximates)."""
        a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
        amax = float(a.max()) if a.size else 0.0
        if amax == 0.0:
            counts = np.zeros(num_bins, np.int64)
            counts[0] = a.size
            return cls(counts, 0.0)
        counts, _ = np.histogram(a, bins=num_bins, range=(0.0, amax))
        return cls(counts.astype(np.int64), amax)


class StreamingHistogram:
    """Running |x| histogram, min, max and count of one tensor, updated batch by batch."""

    def __init__(self, num_bins: int = 2048, upsample: int = UPSAMPLE):
        if num_bins < 1 or upsample < 1 or upsample & (upsample - 1):
            raise ValueError("num_bins must be >= 1 and upsample a power of two")
        self.num_bins = num_bins
        self.counts = np.zeros(num_bins * upsample, np.int64)  # fine bins over [0, self.range)
        self.range = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.total = 0

    @property
    def amax(self) -> float:
        return max(-self.min, self.max, 0.0) if self.total else 0.0

    def update(self, x: np.ndarray) -> None:
        """Add the values of `x` (any shape). Raises ValueError on NaN or infinity."""
        x = np.asarray(x)
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("non-finite values (NaN or inf)")
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.total += x.size
        amax = max(-lo, hi)
        if amax > self.range:
            self._grow(amax)
        n = len(self.counts)
        if self.range == 0.0:  # only zeros so far
            self.counts[0] += x.size
            return
        a = np.abs(x.ravel(), dtype=np.float32)
        a *= np.float32(n / self.range * _SHRINK)  # max |x| lands in bin n-1, never n
        self.counts += np.bincount(a.astype(np.intp), minlength=n)

    def _grow(self, amax: float) -> None:
        if self.range == 0.0:
            self.range = amax  # counts so far are all zeros, in bin 0 for any range
            return
        k = math.ceil(math.log2(amax / self.range))
        while self.range * 2.0 ** k < amax:  # guard against log2 rounding
            k += 1
        n, f = len(self.counts), 2 ** k
        if f >= n:
            merged = np.zeros(n, np.int64)
            merged[0] = self.counts.sum()
        else:
            merged = np.zeros(n, np.int64)
            merged[: n // f] = self.counts.reshape(n // f, f).sum(axis=1)
        self.counts = merged
        self.range *= 2.0 ** k

    def finalize(self) -> Histogram:
        """`num_bins` bins over [0, amax]; each fine bin moves whole to the bin holding its centre."""
        amax = self.amax
        if amax == 0.0:
            counts = np.zeros(self.num_bins, np.int64)
            counts[0] = self.total
            return Histogram(counts, 0.0)
        n = len(self.counts)
        centres = (np.arange(n) + 0.5) * (self.range / n)
        target = np.minimum((centres * (self.num_bins / amax)).astype(np.int64), self.num_bins - 1)
        counts = np.bincount(target, weights=self.counts, minlength=self.num_bins)
        return Histogram(np.rint(counts).astype(np.int64), amax)
