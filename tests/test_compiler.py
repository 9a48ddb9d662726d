"""Compiler: ONNX checks, the artifact (files, mod.json, hashes), atomic writes, targets, CLI."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from deploy.compiler import compile_build
from deploy.compiler.ops_scan import UnsupportedOpsError, frontend_ops, supported_ops
from deploy.compiler.target import parse_target_spec
from deploy.config import load_build_config
from deploy.errors import ConfigError, UnsupportedError
from deploy.runtime.suite import process_ops_from_json
from onnx_graphs import conv_graph, misc_graph, ort_run

REPO = Path(__file__).resolve().parents[1]
PROCESS_OPS = [{"type": "DecodeImage"}, {"type": "CvtColor", "code": "COLOR_RGB2BGR"},
               {"type": "Resize", "size": [16, 16]},
               {"type": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
               {"type": "ToTensor"}]


def write_build(tmp: Path, model: onnx.ModelProto | None, name: str = "net", shape=None, dtype: str = "fp32",
                compile_opts: dict | None = None, checkpoint: str | None = None) -> Path:
    """A current-schema build YAML (and the ONNX it names) in `tmp`; returns the YAML path."""
    tmp.mkdir(parents=True, exist_ok=True)
    if model is not None:
        onnx.save(model, tmp / f"{name}.onnx")
    if shape is None:
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        shape = {"input": [1, *dims[1:]]}
    backend = {"type": "tvm_vacc", "dtype": dtype}
    if compile_opts:
        backend["compile"] = compile_opts
    doc = {"name": name,
           "frontend": {"type": "onnx", "checkpoint": checkpoint or f"./{name}.onnx", "shape": shape},
           "backend": backend,
           "dataset": {"type": "tvm", "path": "./images", "sampler": {"suffix": "png", "get_data_num": 4},
                       "process_ops": PROCESS_OPS},
           "workspace": {"path": "./ws"}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(ws: Path) -> list[str]:
    return sorted(p.name for p in ws.iterdir() if ".tmp-" in p.name or ".old-" in p.name) if ws.exists() else []


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """misc_graph compiled once for the layout checks."""
    tmp = tmp_path_factory.mktemp("built")
    model = misc_graph(c=8, h=16, w=16)
    y = write_build(tmp, model, "misc")
    cfg = load_build_config(y)
    prefix = compile_build(cfg, progress=False)
    return cfg, prefix, model


# ---- environment -------------------------------------------------------------------------------

@pytest.mark.slow  # a fresh process importing TVM
def test_tvm_ffi_pinned_and_save_json_works():
    from importlib.metadata import version
    assert version("apache-tvm-ffi") == "0.1.14.post1", \
        "apache-tvm-ffi must stay 0.1.14.post1 (save_json segfaults on 0.1.15)"
    assert version("apache-tvm") == "0.27.0.post1"
    assert '"apache-tvm-ffi==0.1.14.post1"' in (REPO / "pyproject.toml").read_text()
    # in a subprocess: the broken versions segfault, which would take pytest down with them
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from deploy.tvm_env import import_tvm; tvm = import_tvm()\n"
            "from onnx_graphs import conv_graph\n"
            "from tvm.relax.frontend.onnx import from_onnx\n"
            "mod = from_onnx(conv_graph(cin=3, cout=4, h=8, w=8))\n"
            "text = tvm.ir.save_json(mod)\n"
            "tvm.ir.assert_structural_equal(tvm.ir.load_json(text), mod)\n"
            "print('ok', len(text))" % str(REPO / "tests"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_supported_ops_come_from_the_frontend_table():
    table = frontend_ops()
    assert {"Conv", "ConvTranspose", "Resize", "BatchNormalization", "MaxPool", "Concat"} <= supported_ops()
    assert "NonMaxSuppression" in table and "NonMaxSuppression" not in supported_ops()  # ours: excluded
    assert "Loop" not in table and "Loop" not in supported_ops()


# ---- artifact ----------------------------------------------------------------------------------

def test_artifact_files_and_meta(built):
    cfg, prefix, model = built
    folder = prefix.parent
    assert prefix == cfg.prefix == folder / "mod" and folder == cfg.artifact_dir
    assert sorted(p.name for p in folder.iterdir()) == ["compile.log", "mod.json", "mod.so"]
    assert leftovers(folder.parent) == []
    meta = json.loads((folder / "mod.json").read_text())
    assert meta["schema_version"] == 1 and meta["name"] == "misc" and meta["library"] == "mod.so"
    assert meta["inputs"] == [{"name": "input", "shape": [None, 8, 16, 16], "dtype": "float32", "layout": "NCHW"}]
    assert [(o["name"], o["shape"], o["dtype"]) for o in meta["outputs"]] == [("output", [None, 8, 16, 16], "float32")]
    assert meta["main_output"] == "output"
    assert meta["batch"] == {"symbolic": True, "sizes": None, "functions": {"*": "main"}}
    assert meta["batch_sizes"] is None
    assert meta["dtype"] == "fp32" and meta["device"] == "cpu"
    assert meta["target"]["kind"] == "llvm" and meta["target"]["mcpu"] not in ("", "generic", "native")
    import tvm
    import tvm_ffi
    assert meta["tvm"] == {"version": tvm.__version__, "ffi_version": tvm_ffi.__version__}
    src = meta["sources"]
    assert src["onnx"] == {"path": str(cfg.frontend.checkpoint), "sha256": sha256(cfg.frontend.checkpoint)}
    assert src["build_yaml"] == {"path": str(cfg.source), "sha256": sha256(cfg.source)}
    assert src["calibration"] == {"files": 0, "sha256": None}
    assert meta["preprocess"][0] == {"type": "DecodeImage"}
    assert meta["preprocess"][2] == {"type": "Resize", "size": [16, 16], "method": "BILINEAR_CV"}
    assert process_ops_from_json(meta["preprocess"]) == cfg.dataset.process_ops
    assert meta["compile"]["seconds"] > 0 and set(meta["compile"]["stages"]) >= {"import", "build", "export"}
    log = (folder / "compile.log").read_text()
    assert "stage build: done" in log and "ops: " in log and "Conv×3" in log


def test_compiled_matches_onnxruntime(built):
    from deploy.runtime import Model
    _, prefix, model = built
    m = Model(prefix)
    x = np.random.default_rng(1).standard_normal((2, 8, 16, 16)).astype(np.float32)
    (y,), (ref,) = m.run(x), ort_run(model, x)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert float(np.abs(y - ref).max()) < 1e-4


# ---- model checks ------------------------------------------------------------------------------

def _unsupported_model() -> onnx.ModelProto:
    """A conv net with 2× NonMaxSuppression, a custom-domain op and an op TVM has no converter for,
    all fed by the input (graph preparation folds constant subgraphs, so these must be live)."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    box_shape = numpy_helper.from_array(np.array([0, 64, 4], np.int64), "box_shape")
    score_shape = numpy_helper.from_array(np.array([0, 1, 64], np.int64), "score_shape")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Transpose", ["c"], ["ct"], perm=[0, 2, 3, 1], name="nhwc"),
             helper.make_node("Reshape", ["ct", "box_shape"], ["boxes"], name="boxes"),
             helper.make_node("ReduceMean", ["c"], ["cm"], axes=[1], keepdims=1, name="mean"),
             helper.make_node("Reshape", ["cm", "score_shape"], ["scores"], name="scores"),
             helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel_a"], name="nms_a"),
             helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel_b"], name="nms_b"),
             helper.make_node("Frobnicate", ["c"], ["f"], domain="com.acme", name="frob"),
             helper.make_node("Det", ["input"], ["d"], name="det"),
             helper.make_node("Relu", ["f"], ["output"], name="relu")]
    outs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8]),
            helper.make_tensor_value_info("sel_a", TensorProto.INT64, [None, 3]),
            helper.make_tensor_value_info("sel_b", TensorProto.INT64, [None, 3]),
            helper.make_tensor_value_info("d", TensorProto.FLOAT, ["N", 3])]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          outs, [w, box_shape, score_shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)])
    m.ir_version = 8
    return m


def test_every_unsupported_op_is_listed_with_counts(tmp_path):
    y = write_build(tmp_path, _unsupported_model(), "bad")
    with pytest.raises(UnsupportedOpsError) as e:
        compile_build(load_build_config(y), progress=False)
    msg = str(e.value)
    assert "3 unsupported operator types (4 nodes)" in msg and "bad.onnx" in msg
    assert "NonMaxSuppression ×2 (nms_a, nms_b)" in msg
    assert "com.acme::Frobnicate ×1 (frob)" in msg and "custom domain" in msg
    assert "Det ×1 (det)" in msg
    assert {(op.qualified, op.count) for op in e.value.ops} == {("NonMaxSuppression", 2),
                                                                ("com.acme::Frobnicate", 1), ("Det", 1)}
    assert isinstance(e.value, UnsupportedError)
    assert not (tmp_path / "ws").exists()  # checks run before anything is written


def test_missing_and_corrupt_onnx_name_the_path(tmp_path):
    y = write_build(tmp_path, None, "gone", shape={"input": [1, 3, 8, 8]}, checkpoint="./onnx/gone.onnx")
    with pytest.raises(ConfigError,
                       match=r"onnx/gone\.onnx: ONNX file not found \(frontend\.checkpoint in .*gone\.yaml\)"):
        compile_build(load_build_config(y), progress=False)
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a protobuf at all" * 10)
    y = write_build(tmp_path, None, "junk", shape={"input": [1, 3, 8, 8]})
    with pytest.raises(ConfigError, match=r"junk\.onnx: not a readable ONNX model"):
        compile_build(load_build_config(y), progress=False)


def test_wrong_input_name_lists_the_real_inputs(tmp_path):
    y = write_build(tmp_path, conv_graph(cin=3, cout=4, h=16, w=16), "named", shape={"data": [1, 3, 16, 16]})
    with pytest.raises(ConfigError) as e:
        compile_build(load_build_config(y), progress=False)
    msg = str(e.value)
    assert "frontend.shape" in msg and "'data' is not an input" in msg
    assert "the model's inputs: input [N, 3, 16, 16] float32" in msg


def test_chw_must_match_static_onnx_dims(tmp_path):
    y = write_build(tmp_path, conv_graph(cin=3, cout=4, h=16, w=16), "chw", shape={"input": [1, 3, 20, 16]})
    with pytest.raises(ConfigError, match=r"does not fit the model's static input input \[N, 3, 16, 16\].*H 20 vs 16"):
        compile_build(load_build_config(y), progress=False)


# ---- atomic write ------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["build", "verify"])
def test_failed_compile_leaves_previous_artifact(tmp_path, monkeypatch, where):
    import tvm

    import deploy.compiler.compile as cc
    y = write_build(tmp_path, conv_graph(cin=3, cout=4, h=8, w=8), "atomic")
    cfg = load_build_config(y)
    prefix = compile_build(cfg, progress=False)
    before = {p.name: p.read_bytes() for p in prefix.parent.iterdir()}

    def boom(*args, **kwargs):
        raise (RuntimeError("build exploded") if where == "build" else KeyboardInterrupt())
    if where == "build":
        monkeypatch.setattr(tvm, "compile", boom)                 # fails before anything is exported
    else:
        monkeypatch.setattr(cc, "_verify", boom)                  # fails with a new mod.so in the temp folder
    with pytest.raises(RuntimeError if where == "build" else KeyboardInterrupt):
        compile_build(cfg, progress=False)
    assert {p.name: p.read_bytes() for p in prefix.parent.iterdir()} == before
    assert leftovers(tmp_path / "ws") == []
    monkeypatch.undo()
    from deploy.runtime import Model
    assert Model(prefix).run(np.zeros((1, 3, 8, 8), np.float32))[0].shape == (1, 4, 8, 8)


# ---- targets -----------------------------------------------------------------------------------

def test_target_specs():
    assert parse_target_spec('{"kind": "llvm", "mcpu": "skylake-avx512"}') == {"kind": "llvm", "mcpu": "skylake-avx512"}
    assert parse_target_spec({"kind": "cuda", "arch": "sm_90"}) == {"kind": "cuda", "arch": "sm_90"}
    assert parse_target_spec("znver4") == {"kind": "llvm", "mcpu": "znver4"}
    with pytest.raises(ConfigError, match="JSON target"):
        parse_target_spec("llvm -mcpu=skylake-avx512")
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_target_spec('{"kind": llvm}')


def test_bogus_mcpu_is_rejected_with_examples(tmp_path):
    y = write_build(tmp_path, conv_graph(cin=3, cout=4, h=8, w=8), "bogus")
    with pytest.raises(ConfigError) as e:
        compile_build(load_build_config(y), target='{"kind": "llvm", "mcpu": "bogus-9000"}', progress=False)
    msg = str(e.value)
    assert "--target: unknown mcpu 'bogus-9000'" in msg and "skylake-avx512" in msg and "(this host)" in msg
    with pytest.raises(UnsupportedError, match="target kind 'opencl' is not supported"):
        compile_build(load_build_config(y), target={"kind": "opencl"}, progress=False)
    with pytest.raises(ConfigError, match="cuda target needs an arch"):
        compile_build(load_build_config(y), target={"kind": "cuda"}, progress=False)
    assert not (tmp_path / "ws" / "bogus").exists()


@pytest.mark.slow  # CUDA code generation (and nvcc when present)
def test_cuda_target_compiles(tmp_path):
    import shutil
    y = write_build(tmp_path, conv_graph(cin=3, cout=4, h=8, w=8), "gpu")
    prefix = compile_build(load_build_config(y), target='{"kind": "cuda", "arch": "sm_90"}', progress=False)
    meta = json.loads(prefix.with_name("mod.json").read_text())
    assert meta["device"] == "cuda" and meta["target"]["kind"] == "cuda" and meta["target"]["arch"] == "sm_90"
    assert meta["target_features"] == [] and meta["device_code"]["format"] == "cuda-source"
    assert prefix.with_name("mod.so").stat().st_size > 0
    if shutil.which("nvcc"):
        assert meta["device_code"]["checked_with"].startswith("nvcc")
    import tvm
    if not tvm.cuda(0).exist:
        from deploy.runtime import ArtifactError, Model
        with pytest.raises(ArtifactError, match="built for CUDA .* no CUDA device 0 is available"):
            Model(prefix)


# ---- CLI ---------------------------------------------------------------------------------------

def test_cli_compile_fp16(tmp_path):
    from click.testing import CliRunner

    from deploy.cli import cli
    y = write_build(tmp_path, conv_graph(cin=3, cout=4, h=8, w=8), "clinet_fp32")
    r = CliRunner().invoke(cli, ["compile", str(y), "--dtype", "fp16"])
    assert r.exit_code == 0, (r.output, r.exception)
    prefix = tmp_path / "ws" / "clinet_fp16" / "mod"
    assert f"artifact: {prefix}" in r.output
    assert "compiled: fp16 in" in r.output
    assert "input:    input [N, 3, 8, 8] float32" in r.output and "output:   output [N, 4, 8, 8] float32" in r.output
    meta = json.loads(prefix.with_name("mod.json").read_text())
    assert meta["dtype"] == "fp16" and meta["name"] == "clinet_fp16"
    assert not (tmp_path / "ws" / "clinet_fp32").exists()
