"""The fast TVM CPU backend (deploy.compiler.backend.cpu) against onnxruntime, on small graphs."""
from __future__ import annotations

import re

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402
import tvm.relax.frontend.onnx  # noqa: E402,F401

import onnx_graphs as G  # noqa: E402
from deploy.compiler.backend import cpu  # noqa: E402


@pytest.fixture(scope="module")
def target():
    return cpu.host_target()


_CACHE: dict = {}


def compiled(name: str, model, dtype: str, target, **opts):
    """(vm, optimized module) for a model, compiled once per test module run."""
    key = (name, dtype)
    if key not in _CACHE:
        mod = cpu.optimize(relax.frontend.onnx.from_onnx(model), target, dtype, **opts)
        ex = tvm.compile(mod, target, relax_pipeline=cpu.relax_pipeline())
        _CACHE[key] = (relax.VirtualMachine(ex, tvm.cpu()), mod)
    return _CACHE[key]


def run(vm, x: np.ndarray) -> list[np.ndarray]:
    out = vm["main"](tvm.runtime.tensor(x))
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]


def check(name, model, target, batches=(1, 3), dtype="fp32", tol=1e-4, **opts):
    vm, mod = compiled(name, model, dtype, target, **opts)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    for b in batches:
        x = np.random.default_rng(b).standard_normal((b, *shape)).astype("float32")
        ref = G.ort_run(model, x)
        got = run(vm, x)
        assert len(got) == len(ref)
        for o, r in zip(got, ref):
            assert o.shape == r.shape and o.dtype == np.float32
            scale = max(float(np.abs(r).max()), 1e-3)
            assert float(np.abs(o - r).max()) / scale < tol, (name, dtype, b)
    return mod


def schedules(mod) -> dict[str, str]:
    return {gv.name_hint: f.attrs["segdeploy.schedule"] for gv, f in mod.functions.items()
            if isinstance(f, tvm.tirx.PrimFunc) and "segdeploy.schedule" in f.attrs}


# ---- target -----------------------------------------------------------------------------------

def test_host_target():
    t = cpu.host_target()
    assert t.kind.name == "llvm"
    assert str(t.attrs["mcpu"]) not in ("", "generic", "native")
    assert int(cpu.host_target(3).attrs["num-cores"]) == 3


# ---- single ops: fast path (conv schedule) ----------------------------------------------------

FAST = {
    "conv_relu": lambda: G.conv_graph(16, 32, 16, 16),
    "conv_odd_13x11": lambda: G.conv_graph(8, 24, 13, 11),
    "conv_nobias": lambda: G.conv_graph(16, 64, 12, 12, bias=False, relu=False),
    "conv_stride2": lambda: G.conv_graph(16, 32, 13, 11, stride=2),
    "conv_dilation2": lambda: G.conv_graph(16, 32, 16, 16, dilation=2),
    "conv_5x5_co3": lambda: G.conv_graph(8, 3, 12, 12, k=5),
    "conv_1x1_co1": lambda: G.conv_graph(32, 1, 12, 12, k=1),
    "convT_k2s2": lambda: G.conv_transpose_graph(32, 16, 6, 5),
    "convT_k3s2_pad1_outpad1": lambda: G.conv_transpose_graph(16, 8, 6, 5, k=3, stride=2, pad=1,
                                                              output_padding=1),
    "convT_k4s2_pad1": lambda: G.conv_transpose_graph(16, 8, 6, 6, k=4, stride=2, pad=1),
}


@pytest.mark.parametrize("name", list(FAST))
def test_conv_fast_path(name, target):
    mod = check(name, FAST[name](), target)
    kinds = schedules(mod)
    conv = [k for n, k in kinds.items() if "conv" in n]
    assert conv and all(k == "conv" for k in conv), kinds


# ---- Winograd F(4x4, 3x3) ----------------------------------------------------------------------

WINOGRAD = {
    "wino_20x20": lambda: G.conv_graph(32, 48, 20, 20),
    "wino_tail_13x11": lambda: G.conv_graph(24, 32, 13, 11),          # sides not multiples of 4
    "wino_nopad_14x12": lambda: G.conv_graph(16, 16, 14, 12, pad=0, relu=False),
}


@pytest.mark.parametrize("name", [n if n == "wino_tail_13x11" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in WINOGRAD])
def test_winograd(name, target):
    mod = check(name, WINOGRAD[name](), target, winograd_min=10)
    assert [k for n, k in schedules(mod).items() if "conv" in n] == ["winograd"]


def test_winograd_off(target):
    mod = cpu.optimize(relax.frontend.onnx.from_onnx(G.conv_graph(32, 48, 20, 20)), target,
                       "fp32", winograd_min=None)
    assert "winograd" not in schedules(mod).values()


# ---- single ops: fallbacks and the other PrimFunc kinds ---------------------------------------

OTHER = {
    "conv_groups4": lambda: G.conv_graph(16, 32, 12, 12, groups=4),
    "conv_depthwise": lambda: G.conv_graph(16, 16, 12, 12, groups=16),
    "maxpool_floor": lambda: G.pool_graph(8, 13, 11, ceil_mode=0),
    "maxpool_ceil": lambda: G.pool_graph(8, 13, 11, ceil_mode=1),
    "maxpool_k3s2_ceil": lambda: G.pool_graph(8, 13, 11, ceil_mode=1, k=3, s=2),
    "resize_align_corners": lambda: G.resize_graph("align_corners", 8, 7, 5),
    "resize_half_pixel": lambda: G.resize_graph("half_pixel", 8, 7, 5),
    "resize_half_pixel_x4": lambda: G.resize_graph("half_pixel", 16, 6, 6, 4.0),
    "resize_nearest": lambda: G.resize_graph("nearest", 8, 7, 5),
    "concat_add_sigmoid": lambda: G.misc_graph(),
}


@pytest.mark.parametrize("name", list(OTHER))
def test_other_ops(name, target):
    mod = check(name, OTHER[name](), target)
    assert "none" not in schedules(mod).values()


# ---- whole graphs: BN folding, symbolic batch, fp16 -------------------------------------------

@pytest.mark.slow  # a whole-graph compile; test_runtime compiles mini_unet in the fast set
def test_mini_unet_fp32_symbolic_batch(target):
    """One executable (symbolic N) runs every batch size; BN is folded into the convs."""
    mod = check("mini_unet", G.mini_unet(), target, batches=(1, 2, 5))
    text = mod["main"].script()
    assert "batch_norm" not in text and "R.divide" not in text
    assert "R.call_tir" in text and "R.nn.conv2d" not in text
    kinds = schedules(mod)
    assert all(k in ("conv", "winograd") for n, k in kinds.items() if "conv" in n), kinds
    assert "winograd" in kinds.values() and "none" not in kinds.values()


@pytest.mark.slow  # a whole-graph compile, in fp16
def test_mini_unet_fp16(target):
    """fp16: fp32 model input/output, half activations and weights; close to fp32."""
    vm, mod = compiled("mini_unet", G.mini_unet(), "fp16", target)
    assert "float16" in mod["main"].script()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32")
    for o, r in zip(run(vm, x), G.ort_run(G.mini_unet(), x)):
        assert o.dtype == np.float32
        assert float(np.abs(o - r).max()) < 1e-2      # sigmoid outputs in [0, 1]


def test_batchnorm_variants(target):
    """BN after a bias-free conv folds too; a BN that follows no conv is decomposed."""
    g = G.Graph(8, 10, 10)
    y = g.conv(g.relu(g.bn("input", 8)), 8, 16, bias=False)
    mod = check("bn_variants", g.model(g.relu(g.bn(y, 16))), target)
    assert mod["main"].script().count("R.call_tir") >= 2 and "batch_norm" not in mod["main"].script()


def test_static_batch(target):
    """A static shape_dict works too (the batch is then fixed)."""
    m = G.conv_graph(16, 32, 12, 12)
    mod = cpu.optimize(relax.frontend.onnx.from_onnx(m, shape_dict={"input": [2, 16, 12, 12]}),
                       target, "fp32")
    vm = relax.VirtualMachine(tvm.compile(mod, target), tvm.cpu())
    x = np.random.default_rng(0).standard_normal((2, 16, 12, 12)).astype("float32")
    np.testing.assert_allclose(run(vm, x)[0], G.ort_run(m, x)[0], atol=1e-4)


def test_symbolic_batch_keeps_alias_info(target):
    """relax_pipeline() marks the VM shape_func noalias; otherwise TVM drops the alias info of
    every kernel named before it and the conv micro-kernel spills its accumulators."""
    mod = cpu.optimize(relax.frontend.onnx.from_onnx(G.conv_graph(16, 32, 12, 12)), target, "fp32")
    ex = tvm.compile(mod, target, relax_pipeline=cpu.relax_pipeline())
    ll = ex.mod.imports[0].inspect_source("ll")
    assert "shape_func" in ll
    assert len(set(re.findall(r"!tbaa !\d+", ll))) > 4


def test_bad_dtype(target):
    with pytest.raises(ValueError):
        cpu.pipeline(target, "int4")
