"""kl_divergence against an independent oracle: NVIDIA's published TensorRT entropy calibration
(pytorch_quantization `_compute_amax_entropy`), transcribed candidate by candidate with the
published code's own np.linspace/np.digitize grouping and scipy.stats.entropy semantics, on
synthetic distributions and on every calibrated tensor of mini_unet; and the streaming histogram
against the one-shot histogram the search assumes."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from deploy.quantize import thresholds as T
from deploy.quantize.calibrate import calibration_tensors
from deploy.quantize.collect import collect_histograms, with_outputs
from deploy.quantize.histogram import Histogram
from onnx_graphs import mini_unet


def published_entropy_amax(counts: np.ndarray, amax: float, unsigned: bool, num_bits: int = 8,
                           start_bin: int = 128) -> float:
    """The published algorithm, one candidate at a time (numpy inside a candidate only)."""
    bins = counts.astype(np.float64)
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        group = np.digitize(np.arange(i), np.linspace(0, i, num=nbins + 1)) - 1
        group[bins[:i] == 0] = -1
        keep = group >= 0
        sums = np.bincount(group[keep], weights=bins[:i][keep], minlength=nbins)
        sizes = np.bincount(group[keep], minlength=nbins)
        q = np.zeros(i)
        q[keep] = sums[group[keep]] / sizes[group[keep]]
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        if q.sum() == 0:  # 0/0 in the published code (see deploy.quantize.thresholds)
            divergences.append(np.inf)
            continue
        p, q = p / p.sum(), q / q.sum()
        terms = np.zeros(i)
        both = (p > 0) & (q > 0)
        terms[both] = p[both] * np.log(p[both] / q[both])
        terms[(p > 0) & (q == 0)] = np.inf
        divergences.append(terms.sum())
    d = np.array(divergences)
    last_argmin = len(d) - 1 - int(np.argmin(d[::-1]))
    return np.linspace(0, amax, len(bins) + 1)[last_argmin + start_bin]


def _dists(n=100_000):
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, n)
    return {
        "post_relu_half_normal": np.maximum(normal, 0),
        "signed_normal": normal,
        "heavy_tail_student_t2": rng.standard_t(2, n),
        "heavy_tail_laplace": rng.laplace(0, 1, n),
        "spike_at_zero_signed": np.where(rng.random(n) < 0.7, 0.0, normal),
        "spike_at_zero_unsigned": np.where(rng.random(n) < 0.7, 0.0, np.abs(normal)),
        "normal_with_outliers": np.concatenate([normal, rng.normal(0, 25, 12)]),
        "sparse_unsigned": np.concatenate([np.zeros(5000), rng.uniform(0.5, 1.0, 300)]),
    }


DISTS = _dists()


def _agree(h: Histogram, unsigned: bool) -> float:
    """|ours - oracle| in bins."""
    ours = T.kl_threshold(h, 128, unsigned)
    ref = published_entropy_amax(h.counts, h.amax, unsigned)
    return abs(ours - ref) / h.width


@pytest.mark.parametrize("name", list(DISTS))
@pytest.mark.parametrize("num_bins", [512, 2048])
def test_kl_matches_published_algorithm(name, num_bins):
    x = DISTS[name]
    assert _agree(Histogram.from_array(x, num_bins), bool(x.min() >= 0)) <= 1.0001


def test_levels_follow_the_backend_grid():
    """uint8 tensors are searched with 256 levels, int8 with 128 per side; num_quantized_bins scales both."""
    assert T.kl_levels(128, unsigned=True) == 256 and T.kl_levels(128, unsigned=False) == 128
    h = Histogram.from_array(DISTS["post_relu_half_normal"], 2048)
    assert T.kl_threshold(h, 128, unsigned=True) != T.kl_threshold(h, 128, unsigned=False)


def test_zero_spike_does_not_clip_post_relu_tensors():
    """The published bins[0] = bins[1] step: the half-normal keeps ~4 sigma, the spike alone would clip."""
    h = Histogram.from_array(DISTS["post_relu_half_normal"], 2048)
    t = T.kl_threshold(h, 128, unsigned=True)
    assert 3.5 < t <= h.amax
    counts = h.counts.copy()
    counts[0] = h.counts[0] * 10  # more zeros change nothing
    assert T.kl_threshold(Histogram(counts, h.amax), 128, True) == t


def _activations(model, batches, tensors):
    sess = ort.InferenceSession(with_outputs(model, tensors).SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = {t: [] for t in tensors}
    for x in batches:
        for name, v in zip(names, sess.run(None, {"input": x})):
            if name in outs:
                outs[name].append(v.ravel())
        outs["input"].append(x.ravel())
    return {t: np.concatenate(v) for t, v in outs.items()}


@pytest.fixture(scope="module")
def unet_data():
    """mini_unet and calibration batches whose range grows batch after batch (as images vary)."""
    model = mini_unet(c=8, h=32, w=32)
    rng = np.random.default_rng(3)
    batches = [(rng.normal(0, 1, (4, 3, 32, 32)) * s).astype(np.float32) for s in (0.3, 0.5, 1.0, 1.0, 2.0, 5.0)]
    tensors = calibration_tensors(model)
    return model, batches, tensors, _activations(model, batches, tensors)


def test_kl_matches_published_algorithm_on_mini_unet(unet_data):
    _, _, tensors, acts = unet_data
    assert len(tensors) >= 20
    for t in tensors:
        x = acts[t]
        assert _agree(Histogram.from_array(x, 2048), bool(x.min() >= 0)) <= 1.0001, t


def test_streaming_threshold_equals_one_shot_on_mini_unet(unet_data):
    model, batches, tensors, acts = unet_data
    hists = collect_histograms(model, "input", lambda: ((x, len(x)) for x in batches), tensors, progress=False)
    moved = {}
    for t in tensors:
        sh, x = hists[t], acts[t]
        unsigned = bool(x.min() >= 0)
        one_shot = Histogram.from_array(x, 2048)
        moved[t] = abs(T.kl_threshold(sh.finalize(), 128, unsigned) - T.kl_threshold(one_shot, 128, unsigned))
        moved[t] /= one_shot.width
    assert max(moved.values()) <= 1.0001, {t: round(m, 2) for t, m in moved.items() if m > 1.0001}
