"""Clipping-threshold search on |x| histograms (pure numpy), one function per `calibrate_mode`.

Each search returns T > 0 such that the tensor is quantized with scale T/127 (int8, symmetric)
or T/255 (uint8, zero point 0, for tensors whose calibrated min is >= 0). Conventions, exactly:

- `max`: T = max |x|.
- `percentile` (p, default 99.99): the smallest bin upper edge (k+1)*w whose cumulative count
  reaches p% of all samples; at most one bin width above the exact sample percentile.
- `kl_divergence`: TensorRT's entropy calibration as NVIDIA publishes it in code, exactly:
  `_compute_amax_entropy` in pytorch_quantization/calib/histogram.py (NVIDIA/TensorRT repository,
  tools/pytorch-quantization, v2.1; its `HistogramCalibrator.compute_amax("entropy")` with the
  defaults stride=1, start_bin=128), the implementation of Migacz, "8-bit Inference with
  TensorRT", GTC 2017 (s7310). On the n = num_bins bins of width w over [0, max|x|]:
    bins = counts with bins[0] replaced by bins[1] (post-ReLU tensors hold ~50 % exact zeros,
       which quantize exactly at any scale; left in, that spike is spread over its whole Q group
       and drives the search to clip hard: the int8 output error of the test nets grows 7-14x);
    L = 1 << (num_bits - 1 + unsigned) levels: 128 for signed tensors (int8, 0..127 per side)
       and 256 for unsigned ones (uint8, 0..255), the grids the backend quantizes to; here
       L = num_quantized_bins (default 128) for signed and 2 * num_quantized_bins for unsigned;
    for every i in [num_quantized_bins, n] (NVIDIA's start_bin, 128 at the default; i = n keeps all):
       P = bins[:i] with the outliers sum(bins[i:]) added to P[i-1];
       Q: bin b < i belongs to group floor(b L / i) (np.digitize on np.linspace(0, i, L + 1), the
          same for L a power of two), each group's sum of bins[:i] is spread evenly over the
          group's bins with bins[b] != 0 (Q = 0 where bins[b] == 0);
       KL(P || Q) as scipy.stats.entropy: both normalised to sum 1, terms with P = 0 are 0, a term
          with P > 0 and Q = 0 (bins[i-1] == 0 below outliers) is +inf;
    the LAST i with the minimal KL wins and T = i * w (the bin edge).
  One case is left undefined by the published code: when bins[:i] is all zero, Q is 0/0 there and
  np.argmin picks that NaN (a T below every sample); such candidates score +inf here instead.
- `mse`: for every bin upper edge T = k*w (k = 1..n), the expected squared error of quantizing
  with scale s = T/qmax (qmax 127 for int8 symmetric, 255 for uint8): rounding error inside
  [0, T - s/2], clipping error (|x| - T)^2 above, integrated exactly with samples spread
  uniformly inside each histogram bin. The first minimum wins.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from deploy.quantize.histogram import Histogram


def max_threshold(h: Histogram) -> float:
    return h.amax


def percentile_threshold(h: Histogram, percentile: float = 99.99) -> float:
    if h.amax == 0.0:
        return 0.0
    cum = np.cumsum(h.counts)
    k = int(np.searchsorted(cum, percentile / 100.0 * cum[-1], side="left"))
    return min((min(k, h.num_bins - 1) + 1) * h.width, h.amax)


def kl_levels(num_quantized_bins: int, unsigned: bool) -> int:
    """Q's levels: NVIDIA's 1 << (num_bits - 1 + unsigned), i.e. 128 / 256 at the default."""
    return num_quantized_bins * (2 if unsigned else 1)


def kl_divergences(counts: np.ndarray, levels: int, start: int) -> np.ndarray:
    """KL(P || Q) for every candidate i in [start, len(counts)] (entry i - start), all candidates at
    once, for `counts` whose bin 0 is already flattened.

    Same quantities as the per-candidate loop in the module docstring, from prefix sums: with
    N = sum(P), Nq = sum(bins[:i]) = sum(Q), G/nz the per-group sums and non-zero counts,
    KL = (sum P log P - sum_g G log(G / nz) - outliers log(Q[i-1])) / N - log N + log Nq.
    """
    hist = counts.astype(np.float64)
    n, lv = len(hist), levels
    total = hist.sum()
    cum = np.concatenate([[0.0], np.cumsum(hist)])                  # cum[i] = sum(hist[:i])
    cnz = np.concatenate([[0], np.cumsum(hist > 0)]).astype(np.float64)
    hlogh = np.where(hist > 0, hist * np.log(np.where(hist > 0, hist, 1.0)), 0.0)
    chlogh = np.concatenate([[0.0], np.cumsum(hlogh)])

    i = np.arange(start, n + 1)                                     # candidates (K,)
    edges = -(-np.arange(lv + 1)[None, :] * i[:, None] // lv)       # ceil(k i / L): group k's first bin
    gsum = cum[edges[:, 1:]] - cum[edges[:, :-1]]
    gnz = cnz[edges[:, 1:]] - cnz[edges[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        glogq = np.where(gnz > 0, gsum * np.log(gsum / gnz), 0.0).sum(axis=1)
        last = hist[i - 1]
        outliers = total - cum[i]
        g_last = ((i - 1) * lv) // i
        rows = np.arange(len(i))
        q_last = gsum[rows, g_last] / gnz[rows, g_last]
        p_last = last + outliers
        plogp = chlogh[i - 1] + np.where(p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0)), 0.0)
        cross = glogq + np.where((last > 0) & (outliers > 0), outliers * np.log(q_last), 0.0)
        kl = (plogp - cross) / total - np.log(total) + np.log(cum[i])
    kl[((last == 0) & (outliers > 0)) | (cum[i] == 0)] = np.inf
    return np.maximum(kl, 0.0)


def kl_threshold(h: Histogram, num_quantized_bins: int = 128, unsigned: bool = False) -> float:
    if h.amax == 0.0:
        return 0.0
    counts = h.counts.copy()
    if h.num_bins > 1:
        counts[0] = counts[1]
    kl = kl_divergences(counts, kl_levels(num_quantized_bins, unsigned), num_quantized_bins)  # kl[-1] is finite
    i = len(kl) - 1 - int(np.argmin(kl[::-1])) + num_quantized_bins  # the last minimum
    return i * h.width


def _sq_err_integral(x: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """F(x) = integral over [0, x] of (v - Qt(v))^2 for Qt(v) = s*min(round(v/s), t/s); t, s: (K, 1).

    Below the knee t - s/2 this is x s^2/12 plus a periodic term psi(f) = f^3/3 - f s^2/12 of the
    offset f in [-s/2, s/2) from the nearest level (psi vanishes at whole cells); above it the
    clipping error adds ((x - t)^3 + (s/2)^3) / 3 to F(knee) = knee s^2/12.
    """
    knee = t - s / 2
    s2 = s * s / 12
    xa = np.minimum(x, knee)
    u = xa / s + 0.5
    f = (u - np.floor(u) - 0.5) * s
    inner = xa * s2 + f * (f * f / 3 - s2)
    d = np.maximum(x, knee) - t
    return inner + (d * d * d + s * s * s / 8) / 3


def mse_errors(h: Histogram, qmax: int, chunk: int = 128) -> np.ndarray:
    """Expected squared error (summed over samples) for T = k*w, k = 1..num_bins (entry k - 1).

    sum_b c_b (F(hi_b) - F(lo_b)) / w is evaluated as sum_e F(e) d_e / w over the bin edges e,
    with d_e = c_(e-1) - c_e, so F is computed once per edge.
    """
    n, w = h.num_bins, h.width
    c = h.counts.astype(np.float64)
    d = np.concatenate([[0.0], c]) - np.concatenate([c, [0.0]])
    keep = np.flatnonzero(d)
    edges, d = keep * w, d[keep]
    out = np.empty(n)
    for start in range(0, n, chunk):
        t = (np.arange(start + 1, min(start + chunk, n) + 1, dtype=np.float64) * w)[:, None]
        out[start:start + len(t)] = _sq_err_integral(edges, t, t / qmax) @ d / w
    return out


def mse_threshold(h: Histogram, unsigned: bool = False) -> float:
    if h.amax == 0.0:
        return 0.0
    errors = mse_errors(h, 255 if unsigned else 127)
    return (int(np.argmin(errors)) + 1) * h.width


# calibrate_mode → search(hist, quantize settings, unsigned)
THRESHOLDS: dict[str, Callable[[Histogram, object, bool], float]] = {
    "kl_divergence": lambda h, q, unsigned: kl_threshold(h, q.num_quantized_bins, unsigned),
    "percentile": lambda h, q, unsigned: percentile_threshold(h, q.percentile),
    "max": lambda h, q, unsigned: max_threshold(h),
    "mse": lambda h, q, unsigned: mse_threshold(h, unsigned),
}


def find_threshold(h: Histogram, mode: str, settings, unsigned: bool) -> float:
    """T for `mode` (a calibrate_mode) with `settings` (a deploy.config.Quantize)."""
    return THRESHOLDS[mode](h, settings, unsigned)
