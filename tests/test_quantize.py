"""int8 calibration and planning: threshold searches against brute force (KL: tests/test_kl.py), histograms,
weight quantization, skip lists, the calibration cache and the QDQ writers."""
from __future__ import annotations

import json
import tracemalloc
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy.config import load_build_config
from deploy.errors import ConfigError
from deploy.quantize import QuantizeWarning, plan
from deploy.quantize import thresholds as T
from deploy.quantize.calibrate import calibrate, calibration_tensors
from deploy.quantize.collect import collect_histograms
from deploy.quantize.graph import conv_nodes
from deploy.quantize.histogram import Histogram, StreamingHistogram
from deploy.quantize.planner import resolve_skips
from deploy.quantize.qdq import ort_quantize_static, to_qdq, write_qdq
from deploy.quantize.weights import dequantize_weight, quantize_weight, weight_scale

# ---------------------------------------------------------------- distributions

N = 60_000


def _dists():
    rng = np.random.default_rng(0)
    return {
        "gaussian": rng.normal(0, 1, N),
        "laplacian": rng.laplace(0, 1, N),
        "uniform": rng.uniform(-1, 1, N),
        "relu_half_normal": np.maximum(rng.normal(0, 1, N), 0),
        "gaussian_outliers": np.concatenate([rng.normal(0, 1, N), rng.normal(0, 25, 12)]),
    }


DISTS = _dists()


def test_percentile_and_max_against_samples():
    for name, x in DISTS.items():
        h = Histogram.from_array(x, 2048)
        a = np.abs(x)
        assert T.max_threshold(h) == pytest.approx(a.max(), rel=1e-12)
        for p in (99.0, 99.99):
            ref = np.percentile(a, p)
            got = T.percentile_threshold(h, p)
            assert ref - 1e-9 <= got <= ref + h.width * 1.0001, (name, p, got, ref)
    zeros = Histogram.from_array(np.zeros(10))
    assert T.find_threshold(zeros, "percentile", replace_q(), False) == 0.0


def replace_q(**kw):
    from deploy.config import Quantize
    return replace(Quantize(), **kw)


def _quantize(x, t, qmax, unsigned):
    s = t / qmax
    return np.clip(np.round(x / s), 0 if unsigned else -qmax, qmax) * s


def test_mse_expected_error_matches_dense_brute_force():
    """The analytic per-bin integral equals directly quantizing a dense uniform grid in each bin."""
    x = DISTS["laplacian"]
    h = Histogram.from_array(x, 256)
    for qmax in (127, 255):
        ours = T.mse_errors(h, qmax) / h.total
        sub = (np.arange(256) + 0.5) / 256  # 256 points per bin
        pts = ((np.arange(h.num_bins)[:, None] + sub[None, :]) * h.width).ravel()
        wts = np.repeat(h.counts, len(sub)) / len(sub)
        ref = np.array([np.sum(wts * (pts - _quantize(pts, k * h.width, qmax, True)) ** 2)
                        for k in range(1, h.num_bins + 1)]) / h.total
        np.testing.assert_allclose(ours, ref, rtol=2e-3, atol=1e-12)
        assert abs(int(np.argmin(ours)) - int(np.argmin(ref))) <= 1


@pytest.mark.parametrize("name", list(DISTS))
def test_mse_threshold_minimises_real_quantization_error(name):
    x = DISTS[name]
    unsigned = bool(x.min() >= 0)
    qmax = 255 if unsigned else 127
    h = Histogram.from_array(x, 512)
    ours = T.mse_threshold(h, unsigned)
    sample_mse = np.array([np.mean((x - _quantize(x, k * h.width, qmax, unsigned)) ** 2)
                           for k in range(1, h.num_bins + 1)])
    best = int(np.argmin(sample_mse)) + 1
    k = round(ours / h.width)
    # the sample objective is flat (and noisy) near its minimum: same bin, or as good within 0.5 %
    assert abs(k - best) <= 1 or sample_mse[k - 1] <= sample_mse.min() * 1.005, (k, best)


# ---------------------------------------------------------------- streaming histograms

def _two_passes(sh, batches):
    for step in (sh.observe, sh.add):
        for b in batches:
            step(b)
    return sh.finalize()


def test_streaming_histogram_equals_one_shot():
    """Pass 1 finds the range, pass 2 bins with it: the one-shot histogram, bin for bin (the
    thresholds follow)."""
    rng = np.random.default_rng(1)
    batches = [rng.normal(0, s, 20_000).astype(np.float32) for s in (0.01, 0.2, 0.2, 1.0, 3.0, 0.5, 40.0)]
    sh = StreamingHistogram(2048)
    size = sh.counts.nbytes
    got = _two_passes(sh, batches)
    assert sh.counts.nbytes == size  # memory is fixed, whatever the data
    allx = np.concatenate(batches)
    ref = Histogram.from_array(allx, 2048)
    assert got.amax == ref.amax and got.total == ref.total == allx.size
    assert sh.min == allx.min() and sh.max == allx.max()
    np.testing.assert_array_equal(got.counts, ref.counts)
    numpy_ref, _ = np.histogram(np.abs(allx.astype(np.float64)), 2048, (0, ref.amax))
    assert np.abs(got.counts - numpy_ref).sum() <= 2  # np.histogram differs at most by edge rounding


def test_streaming_histogram_zeros_then_data():
    h = _two_passes(StreamingHistogram(16), [np.zeros(100), np.array([1.0, -2.0])])
    assert h.counts[0] == 100 and h.counts[8] == h.counts[-1] == 1 and h.total == 102 and h.amax == 2.0
    sh = StreamingHistogram(16)
    with pytest.raises(ValueError, match="non-finite"):
        sh.observe(np.array([np.nan]))
    sh.observe(np.zeros(3))
    with pytest.raises(ValueError, match="batches changed"):
        sh.add(np.zeros(4))
    with pytest.raises(ValueError, match="pass 2 binned 0 of the 3"):
        sh.finalize()


# ---------------------------------------------------------------- weights

def test_weight_round_trip_per_channel_and_tensor():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (16, 8, 3, 3)).astype(np.float32) * rng.uniform(0.01, 3, (16, 1, 1, 1)).astype(np.float32)
    w[3] = 0  # an all-zero channel
    for axis in (0, None):
        for power2 in (False, True):
            s = weight_scale(w, axis, power2)
            assert s.shape == ((16,) if axis == 0 else ())
            q = quantize_weight(w, s, axis)
            assert q.dtype == np.int8 and q.min() >= -127
            err = np.abs(dequantize_weight(q, s, axis) - w)
            bound = (s.reshape(-1, 1, 1, 1) if axis == 0 else s) / 2
            assert np.all(err <= bound * (1 + 1e-6))
            if power2:
                assert np.all(np.log2(s) == np.round(np.log2(s)))
    s = weight_scale(w, 0)
    assert s[3] == 1.0 and np.abs(quantize_weight(w, s, 0)).max(axis=(1, 2, 3)).max() == 127
    wt = rng.normal(0, 1, (8, 4, 2, 2)).astype(np.float32)  # ConvTranspose (C_in, C_out, kH, kW)
    st = weight_scale(wt, 1)
    assert st.shape == (4,) and np.allclose(st, np.abs(wt).max(axis=(0, 2, 3)) / 127)


# ---------------------------------------------------------------- a small UNet-like net + data

def small_net(batch="N", size=32, opset=17, named=True, seed=0) -> onnx.ModelProto:
    """Conv(3→8) Relu Conv Relu MaxPool Conv Relu Conv Relu ConvTranspose Concat Conv Relu Conv Relu Conv(8→1)."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(a, name):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    def node(op, ins, name, **kw):
        nodes.append(helper.make_node(op, ins, [f"{name}_out"], name=name if named else "", **kw))
        return f"{name}_out"

    def conv(x, cin, cout, name, k=3, relu=True):
        w = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k))
        y = node("Conv", [x, const(w, f"{name}.w"), const(rng.normal(0, 0.1, cout), f"{name}.b")], name,
                 kernel_shape=[k, k], pads=[k // 2] * 4)
        return node("Relu", [y], f"{name}_relu") if relu else y

    e1 = conv(conv("input", 3, 8, "enc1a"), 8, 8, "enc1b")
    p = node("MaxPool", [e1], "pool", kernel_shape=[2, 2], strides=[2, 2])
    e2 = conv(conv(p, 8, 16, "enc2a"), 16, 16, "enc2b")
    up = node("ConvTranspose", [e2, const(rng.normal(0, 0.2, (16, 8, 2, 2)), "up.w"),
                                const(rng.normal(0, 0.1, 8), "up.b")], "up", kernel_shape=[2, 2], strides=[2, 2])
    cat = node("Concat", [e1, up], "cat", axis=1)
    d = conv(conv(cat, 16, 8, "dec1a"), 8, 8, "dec1b")
    conv(d, 8, 1, "head", k=1, relu=False)
    nodes[-1].output[0] = "output"
    g = helper.make_graph(nodes, "small_net",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 1, size, size])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    return m


def write_images(folder: Path, n: int = 12, size: int = 40, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
        for _ in range(4):
            c = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.circle(img, c, int(rng.integers(3, 10)), tuple(int(v) for v in rng.integers(100, 255, 3)), -1)
        img = cv2.GaussianBlur(img, (5, 5), 1.0)
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), img)
    return folder


YAML = """
name: small_int8
frontend: {{type: onnx, checkpoint: {root}/net.onnx, shape: {{input: [1, 3, 32, 32]}}}}
backend:
  type: tvm
  dtype: int8
  quantize: {{calibrate_mode: {mode}, quantize_per_channel: true{extra}}}
{dataset}
workspace: {{path: {root}/ws}}
"""
DATASET = """dataset:
  path: {root}/images
  sampler: {{suffix: png, get_data_num: 10}}
  process_ops:
    - {{type: DecodeImage}}
    - {{type: Resize, size: [32, 32]}}
    - {{type: Normalize, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
    - {{type: ToTensor}}
"""


def make_cfg(root: Path, mode="kl_divergence", extra="", dataset=True):
    path = root / f"build_{mode}.yaml"
    path.write_text(YAML.format(root=root, mode=mode, extra=extra,
                                dataset=DATASET.format(root=root) if dataset else ""))
    return load_build_config(path)


@pytest.fixture
def setup(tmp_path):
    write_images(tmp_path / "images")
    model = small_net()
    onnx.save(model, tmp_path / "net.onnx")
    return tmp_path, model


def _inputs(cfg, images):
    from deploy.preprocess import Preprocessor
    pre = Preprocessor.from_process_ops(cfg.dataset.process_ops)
    return np.stack([pre.load(p) for p in images])


def _cos(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ---------------------------------------------------------------- skip lists

def test_skip_resolution(setup):
    root, model = setup
    convs = conv_nodes(model)
    names = [c.name for c in convs]
    assert names == ["enc1a", "enc1b", "enc2a", "enc2b", "up", "dec1a", "dec1b", "head"]
    assert [c.conv_index for c in convs] == [0, 1, 2, 3, None, 4, 5, 6]  # ConvTranspose not counted
    q = replace_q()
    assert resolve_skips(convs, q) == {"enc1a": "first conv, 3 input channels (image input)",
                                       "head": "1 output channel (prediction head)"}
    assert resolve_skips(convs, q, keep_edge_convs=False) == {}
    s = resolve_skips(convs, replace_q(skip_conv_layers=(1, 4)), keep_edge_convs=False)
    assert s == {"enc1b": "skip_conv_layers: index 1", "dec1a": "skip_conv_layers: index 4"}
    s = resolve_skips(convs, replace_q(skip_nodes=("enc2b", "dec.*")), keep_edge_convs=False)
    assert set(s) == {"enc2b", "dec1a", "dec1b"} and s["dec1a"] == "skip_nodes: 'dec.*'"
    s = resolve_skips(convs, replace_q(skip_op_types=("ConvTranspose",)), keep_edge_convs=False)
    assert s == {"up": "skip_op_types: ConvTranspose"}
    with pytest.raises(ConfigError, match=r"skip_conv_layers: index 7 is out of range; the model has 7 Conv"):
        resolve_skips(convs, replace_q(skip_conv_layers=(7,)))
    with pytest.warns(QuantizeWarning, match="nothing_like_this"):
        resolve_skips(convs, replace_q(skip_nodes=("nothing_like_this",)))
    unnamed = conv_nodes(small_net(named=False))
    assert unnamed[0].name == "Conv#0" and unnamed[4].name.startswith("ConvTranspose#")


# ---------------------------------------------------------------- plan, cache, calibration

def test_plan_and_cache_reuse_and_invalidation(setup):
    root, model = setup
    cfg = make_cfg(root)
    cache_dir = root / "ws" / "small_int8"
    p1 = plan(cfg, model, cache_dir, progress=False)
    assert not p1.from_cache and (cache_dir / "calibration.json").is_file()
    assert p1.num_images == 10 and len(p1.images_sha256) == 64 and p1.calibrate_mode == "kl_divergence"
    assert list(p1.skipped) == ["enc1a", "head"]
    assert p1.quantized == ["enc1b", "enc2a", "enc2b", "up", "dec1a", "dec1b"]
    a = p1.input_quant("enc1b")  # post-ReLU: uint8, zero point 0, scale T/255
    assert a.dtype == "uint8" and a.zero_point == 0 and a.scale == pytest.approx(a.threshold / 255)
    assert p1.input_quant("dec1b").dtype == "uint8"
    assert p1.input_quant("dec1a").dtype == "int8"  # Concat with the (signed) ConvTranspose output
    out = p1.activations[p1.convs["enc1b"].output]  # pre-ReLU conv output: signed
    assert out.dtype == "int8" and out.scale == pytest.approx(out.threshold / 127)
    assert p1.convs["enc1b"].weight_scale.shape == (8,) and p1.convs["up"].weight_axis == 1
    json.dumps(p1.to_dict())
    assert not list(cache_dir.glob(".calibration.*"))  # no temp file left behind

    p2 = plan(cfg, model, cache_dir, progress=False)
    assert p2.from_cache and p2.activations == p1.activations
    assert not plan(cfg, model, cache_dir, recalibrate=True, progress=False).from_cache

    # changing an image recalibrates
    img = p1.images[0]
    x = cv2.imread(str(img))
    x[:8, :8] = 255
    cv2.imwrite(str(img), x)
    p3 = plan(cfg, model, cache_dir, progress=False)
    assert not p3.from_cache and p3.images_sha256 != p1.images_sha256
    assert plan(cfg, model, cache_dir, progress=False).from_cache

    # changing the mode recalibrates; a different model too
    p4 = plan(make_cfg(root, mode="max"), model, cache_dir, progress=False)
    assert not p4.from_cache
    assert p4.activations["enc1a_relu_out"].threshold == pytest.approx(
        max(p4.activations["enc1a_relu_out"].max, -p4.activations["enc1a_relu_out"].min))
    assert not plan(make_cfg(root, mode="max"), small_net(seed=1), cache_dir, progress=False).from_cache

    # per-tensor power-of-two weights need no recalibration
    p5 = plan(make_cfg(root, mode="max", extra=", quantize_per_channel: false, weight_scale: power2"),
              small_net(seed=1), cache_dir, progress=False)
    s = p5.convs["enc2a"].weight_scale
    assert p5.from_cache and s.shape == () and np.log2(s) == np.round(np.log2(s))


def test_cache_of_an_older_calibration_format_is_not_reused(setup):
    """A new histogram or search changes the thresholds: files of an older FORMAT are recalibrated."""
    from deploy.quantize import cache
    root, model = setup
    cfg = make_cfg(root, mode="percentile")
    plan(cfg, model, root / "c", progress=False)
    path = root / "c" / "calibration.json"
    data = json.loads(path.read_text())
    assert data["key"]["format"] == cache.FORMAT
    data["key"]["format"] = cache.FORMAT - 1
    path.write_text(json.dumps(data))
    assert not plan(cfg, model, root / "c", progress=False).from_cache


def test_fixed_batch_model_pads_without_biasing_statistics(setup):
    root, model = setup
    cfg = make_cfg(root, mode="max")
    from deploy.quantize.calibrate import calibration_images
    images = calibration_images(cfg)[:5]
    free = calibrate(cfg, model, images, progress=False)
    fixed = calibrate(cfg, small_net(batch=2), images, progress=False)  # 5 images → batches 2, 2, 1+pad
    assert free.keys() == fixed.keys()
    for t in free:
        assert fixed[t].min == pytest.approx(free[t].min, abs=1e-5)
        assert fixed[t].max == pytest.approx(free[t].max, abs=1e-5)


def test_collection_memory_does_not_grow_with_images(setup):
    root, model = setup
    tensors = calibration_tensors(model)
    rng = np.random.default_rng(0)

    data = rng.normal(0, 1, (4, 3, 32, 32)).astype(np.float32)

    def batches(n):
        return lambda: ((data * (1 + k % 3), 4) for k in range(n))

    def peak(n):
        tracemalloc.start()
        hists = collect_histograms(model, "input", batches(n), tensors, progress=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, sum(h.counts.nbytes for h in hists.values())

    small, state_small = peak(3)
    large, state_large = peak(30)
    assert state_small == state_large
    assert large < 1.3 * small


def test_missing_dataset_path_names_the_key(setup):
    root, model = setup
    cfg = make_cfg(root, dataset=False)
    with pytest.raises(ConfigError, match=r"build_kl_divergence\.yaml: dataset\.path: required for int8"):
        plan(cfg, model, root / "cache", progress=False)
    cfg = replace(make_cfg(root), dataset=replace(make_cfg(root).dataset, path=root / "nowhere"))
    with pytest.raises(ConfigError, match=r"dataset\.path: calibration image folder .*nowhere does not exist"):
        plan(cfg, model, root / "cache", progress=False)
    cfg = replace(cfg, dataset=replace(cfg.dataset, path=root, suffix="jpg"))
    with pytest.raises(ConfigError, match=r"dataset\.path: no calibration images"):
        plan(cfg, model, root / "cache", progress=False)


def test_wrong_preprocessed_size_is_a_config_error(setup):
    root, model = setup
    cfg = make_cfg(root)
    ops = tuple(op for op in cfg.dataset.process_ops if type(op).__name__ != "Resize")
    cfg = replace(cfg, dataset=replace(cfg.dataset, process_ops=ops))
    with pytest.raises(ConfigError, match=r"dataset\.process_ops: dataset images preprocess to \(3, 40, 40\)"):
        plan(cfg, model, root / "cache", progress=False)
    # the fp16 build's range check feeds the same images: the same error, not onnxruntime's
    from deploy.compiler.fp16_range import overflow_layers
    with pytest.raises(ConfigError, match=r"dataset\.process_ops: dataset images preprocess to \(3, 40, 40\)"):
        overflow_layers(cfg, model, lambda msg: None)


# ---------------------------------------------------------------- QDQ models

@pytest.mark.parametrize("mode", ["kl_divergence", "percentile", "mse"])
def test_qdq_model_runs_and_matches_fp32(setup, mode):
    root, model = setup
    cfg = make_cfg(root, mode=mode)
    p = plan(cfg, model, root / "cache", progress=False)
    out = write_qdq(model, p, root / f"net_{mode}.qdq.onnx")
    q = onnx.load(out)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") == len({c.input for c in p.convs.values()})
    assert ops.count("DequantizeLinear") == ops.count("QuantizeLinear") + len(p.convs)
    by_name = {n.name: n for n in q.graph.node}
    assert by_name["enc1a"].input[0] == "input" and by_name["head"].input[1] == "head.w"  # skipped: untouched
    assert by_name["enc1b"].input[0].endswith("_dequantized")
    assert "enc1b.w" not in {t.name for t in q.graph.initializer}
    wq = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}["enc1b.w_quantized"]
    assert wq.dtype == np.int8

    x = _inputs(cfg, p.images)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"input": x})[0]
    assert _cos(got, ref) > 0.99
    assert np.abs(got - ref).max() < 0.25 * np.abs(ref).max()


def test_qdq_opset11_unnamed_model(setup):
    root, _ = setup
    model = small_net(opset=11, named=False)
    cfg = make_cfg(root, mode="percentile")
    p = plan(cfg, model, root / "cache", progress=False)
    assert "Conv#0" in p.skipped
    q = to_qdq(model, p)
    assert next(o.version for o in q.opset_import if o.domain == "") == 13
    x = _inputs(cfg, p.images[:2])
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    got = ort.InferenceSession(q.SerializeToString()).run(None, {"input": x})[0]
    assert _cos(got, ref) > 0.99


def test_onnxruntime_quantize_static_with_our_ranges(setup):
    root, model = setup
    cfg = make_cfg(root, mode="percentile")
    p = plan(cfg, model, root / "cache", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ort_quantize_static(model, p, root / "net.ortq.onnx")
    q = onnx.load(out)
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    qnodes = {n.input[0]: n for n in q.graph.node if n.op_type == "QuantizeLinear"}
    a = p.activations["enc1a_relu_out"]  # uint8 tensor: same scale, zero point 0
    n = qnodes["enc1a_relu_out"]
    assert inits[n.input[1]] == pytest.approx(a.scale, rel=1e-6) and inits[n.input[2]] == 0
    assert "input" not in qnodes  # the skipped first conv stays float
    x = _inputs(cfg, p.images)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"input": x})[0]
    assert _cos(got, ref) > 0.99


def test_analyze_cli(setup):
    from click.testing import CliRunner

    from deploy.analysis.cli import analyze_cmd
    root, _ = setup
    cfg = make_cfg(root, mode="max")
    res = CliRunner().invoke(analyze_cmd, [str(cfg.source), "--qdq", str(root / "a.qdq.onnx")])
    assert res.exit_code == 0, res.output
    assert "6 convs quantized, 2 kept in fp32" in res.output and "enc1b" in res.output
    assert (root / "a.qdq.onnx").is_file() and (cfg.workspace / f"{cfg.name}.analysis" / "calibration.json").is_file()
    res = CliRunner().invoke(analyze_cmd, [str(cfg.source)])
    assert "(reused)" in res.output
