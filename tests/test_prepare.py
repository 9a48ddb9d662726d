"""Graph preparation (deploy.compiler.prepare): graphs that are static only once shapes are known
compile, match onnxruntime, and say in compile.log what preparation changed."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx_graphs as G
from deploy.compiler import compile_build
from deploy.compiler.prepare import MIN_OPSET, prepare
from deploy.config import load_build_config
from deploy.errors import UnsupportedError
from deploy.runtime import Model
from test_compiler import write_build


def computed_pad_graph() -> onnx.ModelProto:
    """torch.onnx's F.pad with amounts computed from two shapes (UNet's skip alignment):
    Shape/Gather/Sub/Concat feed the pads of a Pad between two convs."""
    g = G.Graph(4, 15, 13)
    small = g.maxpool(g.conv("input", 4, 8))                                  # 7 x 6
    up = g.resize(small, "nearest")                                           # 14 x 12
    dims = [g.op("Sub", [g.op("Gather", [g.op("Shape", [src]), g.const(np.array(axis, "int64"))])
                         for src in ("input", up)]) for axis in (2, 3)]
    zero = g.const(np.array([0, 0], "int64"))
    after = [g.op("Unsqueeze", [d, g.const(np.array([0], "int64"))]) for d in dims]
    pads = g.op("Concat", [zero, g.const(np.array([0, 0], "int64")), zero, *after], axis=0)
    padded = g.op("Pad", [up, pads], mode="constant")
    return g.model(g.conv(g.concat(padded, g.conv("input", 4, 8)), 16, 2, k=1))


def runtime_weight_graph() -> onnx.ModelProto:
    """A conv whose weight is built when the graph runs (ConstantOfShape * constant)."""
    g = G.Graph(8, 16, 16)
    ones = g.op("ConstantOfShape", [g.const(np.array([16, 8, 3, 3], "int64"))],
                value=numpy_helper.from_array(np.array([0.1], "float32")))
    w = g.op("Mul", [ones, g.const(G.np.random.default_rng(1).normal(size=(16, 8, 3, 3)).astype("float32"))])
    return g.model(g.relu(g.op("Conv", ["input", w], kernel_shape=[3, 3], pads=[1, 1, 1, 1])))


def _compile(tmp_path, model, name, **kw):
    prefix = compile_build(load_build_config(write_build(tmp_path, model, name, **kw)), progress=False)
    return Model(prefix), (prefix.parent / "compile.log").read_text()


def _close(model_ref, m, shape, batch=2, tol=1e-4):
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype("float32")
    ref, got = G.ort_run(model_ref, x)[0], m.run({"input": x})[0]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) / max(float(np.abs(ref).max()), 1.0) < tol


@pytest.mark.parametrize("dtype", ["fp32", pytest.param("fp16", marks=pytest.mark.slow)])
def test_computed_pads_fold_and_match(tmp_path, dtype):
    model = computed_pad_graph()
    m, log = _compile(tmp_path, model, "cpad", dtype=dtype)
    _close(model, m, (4, 15, 13), tol=1e-4 if dtype == "fp32" else 2e-2)
    assert "prepare: onnxsim" in log and "Shape 4->0" in log


def test_simplify_off_gives_the_frontends_clear_error(tmp_path):
    y = write_build(tmp_path, computed_pad_graph(), "raw", compile_opts={"simplify": False})
    with pytest.raises(UnsupportedError, match="TVM.s ONNX import failed"):
        compile_build(load_build_config(y), progress=False)


def test_runtime_built_weights_become_constants_and_get_the_conv_schedule(tmp_path):
    model = runtime_weight_graph()
    m, log = _compile(tmp_path, model, "rtw")
    _close(model, m, (8, 16, 16))
    assert "ConstantOfShape 1->0" in log
    schedules = next(line for line in log.splitlines() if "optimize: schedules" in line)
    assert "conv" in schedules or "winograd" in schedules


@pytest.mark.slow
def test_old_opset_is_upgraded(tmp_path):
    g = G.Graph(8, 12, 12)
    slope = g.const(np.linspace(0.1, 0.3, 8).astype("float32").reshape(8, 1, 1), "s")
    model = g.model(g.conv(g.op("PRelu", [g.conv("input", 8, 8), slope]), 8, 4))
    model.opset_import[0].version = 6
    m, log = _compile(tmp_path, model, "old")
    assert f"opset 6 -> {MIN_OPSET}" in log
    _close(onnx.version_converter.convert_version(model, MIN_OPSET), m, (8, 12, 12))


def test_prepare_leaves_the_callers_model_alone():
    model = computed_pad_graph()
    before = model.SerializeToString()
    out = prepare(model, {"input": (4, 15, 13)}, lambda msg: None)
    assert model.SerializeToString() == before
    assert [d.dim_param or d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim] == ["N", 4, 15, 13]


def test_batch_baked_into_the_graph_builds_the_yaml_batch(tmp_path):
    """A Reshape with a literal batch of 1 cannot take a symbolic batch: the YAML's batch is built
    (and said so) instead of refusing; larger batches run in chunks of it."""
    g = G.Graph(4, 8, 8, batch=1)
    flat = g.op("Reshape", [g.conv("input", 4, 4), g.const(np.array([1, 4, 64], "int64"))])
    model = g.model(g.op("Reshape", [g.op("Softmax", [flat], axis=2), g.const(np.array([1, 4, 8, 8], "int64"))]))
    m, log = _compile(tmp_path, model, "fixed")
    meta = json.loads((tmp_path / "ws" / "fixed" / "mod.json").read_text())
    assert meta["batch"]["sizes"] == [1] and not meta["batch"]["symbolic"] and meta["batch"]["fixed_reason"]
    assert "building the YAML's batch 1 as a fixed size" in log
    x = np.random.default_rng(0).standard_normal((3, 4, 8, 8)).astype("float32")
    got = m.run({"input": x})[0]
    ref = np.concatenate([G.ort_run(model, x[i:i + 1])[0] for i in range(3)])
    assert float(np.abs(got - ref).max()) < 1e-5


@pytest.mark.slow
def test_fp16_overflow_is_reported_by_layer(tmp_path, capsys):
    """A layer whose activations pass 65504 on the dataset's images is named before the fp16 build."""
    import cv2
    g = G.Graph(3, 16, 16)
    big = g.op("Mul", [g.relu(g.conv("input", 3, 4)), g.const(np.array(1e5, "float32"))])
    big_node = g.nodes[-1]
    big_node.name = "scale_up"
    model = g.model(g.sigmoid(big))
    (tmp_path / "images").mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(tmp_path / "images" / f"{k}.png"), np.full((20, 20, 3), 60 * k + 10, np.uint8))
    m, log = _compile(tmp_path, model, "hot", dtype="fp16")
    meta = json.loads((tmp_path / "ws" / "hot" / "mod.json").read_text())
    assert [o["node"] for o in meta["fp16_overflow"]] == ["scale_up"]
    assert "scale_up" in capsys.readouterr().err and "fp16 range: 3 dataset images" in log


@pytest.mark.slow
def test_compiling_keeps_torch_out(tmp_path):
    """onnxsim imports torch when it is installed; the compile path masks it (as for TVM)."""
    import subprocess
    import sys
    y = write_build(tmp_path, G.conv_graph(), "light")
    code = ("import sys\nfrom deploy.compiler import compile_build\nfrom deploy.config import load_build_config\n"
            "compile_build(load_build_config(sys.argv[1]), progress=False)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code, str(y)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
def test_fp16_range_check_skips_shape_arithmetic(tmp_path):
    """A Resize whose sizes come from Shape/Slice/Concat (int64 tensors): the range check only
    exposes float tensors, so the fp16 build goes through."""
    import cv2
    g = G.Graph(3, 16, 16)
    x = g.conv("input", 3, 4)
    nc = g.op("Slice", [g.op("Shape", [x]), g.const(np.array([0], "int64")), g.const(np.array([2], "int64"))])
    sizes = g.op("Concat", [nc, g.const(np.array([32, 32], "int64"))], axis=0)
    model = g.model(g.op("Resize", [x, "", "", sizes], mode="nearest"))
    (tmp_path / "images").mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(tmp_path / "images" / f"{k}.png"), np.full((16, 16, 3), 50 * k + 10, np.uint8))
    m, log = _compile(tmp_path, model, "shp", dtype="fp16")
    assert "fp16 range: 2 dataset images" in log
    _close(model, m, (3, 16, 16), batch=1, tol=2e-2)


def test_resize_to_sizes_from_shape_keeps_the_symbolic_batch(tmp_path):
    """torch.onnx's F.interpolate(x, size=skip.shape[-2:]): sizes = Slice(Shape(x), 0, 2) ++ [H, W]."""
    g = G.Graph(4, 6, 5)
    x = g.conv("input", 4, 4)
    nc = g.op("Slice", [g.op("Shape", [x]), g.const(np.array([0], "int64")), g.const(np.array([2], "int64"))])
    sizes = g.op("Concat", [nc, g.const(np.array([12, 9], "int64"))], axis=0)
    model = g.model(g.conv(g.op("Resize", [x, "", "", sizes], mode="linear"), 4, 2, k=1))
    m, log = _compile(tmp_path, model, "rsz")
    assert m.batch_sizes is None and "symbolic-batch import failed" not in log
    _close(model, m, (4, 6, 5), batch=3)
