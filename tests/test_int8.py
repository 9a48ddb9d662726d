"""int8: VNNI conv layers bit-exact against numpy, the QDQ → integer-conv rewrite against
onnxruntime, and int8 builds through compile_build (calibration cache, QDQ model, modes)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("tvm")
from deploy.tvm_env import import_tvm  # noqa: E402

tvm = import_tvm()   # a thread pool over every CPU (when this module is the first to run kernels)
from tvm import relax  # noqa: E402
from tvm.relax.frontend.onnx import from_onnx  # noqa: E402

import onnx_graphs as G  # noqa: E402
from deploy.compiler import compile_build, qdq_to_integer  # noqa: E402
from deploy.io import sha256_files  # noqa: E402
from deploy.compiler.backend import cpu  # noqa: E402
from deploy.compiler.backend.cpu.target import has_features  # noqa: E402
from deploy.config import load_build_config  # noqa: E402
from deploy.errors import UnsupportedError  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def target():
    t = cpu.host_target()
    if not has_features(t, "avx512vnni"):
        pytest.skip("this CPU has no AVX-512 VNNI: int8 builds are refused here (tested below)")
    return t


def build(mod: tvm.IRModule, target) -> tuple[relax.VirtualMachine, tvm.IRModule, object]:
    opt = cpu.optimize(mod, target, "int8")
    ex = tvm.compile(opt, target, relax_pipeline=cpu.relax_pipeline())
    return relax.VirtualMachine(ex, tvm.cpu()), opt, ex


def run(vm, x: np.ndarray) -> list[np.ndarray]:
    out = vm["main"](tvm.runtime.tensor(x))
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]


def schedules(mod: tvm.IRModule) -> list[str]:
    return [str(f.attrs["segdeploy.schedule"]) for f in mod.functions.values()
            if isinstance(f, tvm.tirx.PrimFunc) and "segdeploy.schedule" in f.attrs]


# ---- single integer conv layers: bit-exact ----------------------------------------------------

def int_conv_module(ci: int, h: int, w: int, wq: np.ndarray, stride: int, pad: int, dil: int) -> tvm.IRModule:
    """conv2d(u8 NCHW, s8 OIHW, out_dtype=int32) with a symbolic batch: what the rewrite emits."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((tvm.tirx.Var("N", "int64"), ci, h, w), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.nn.conv2d(x, relax.const(wq), strides=stride, padding=pad, dilation=dil,
                                                  out_dtype="int32"))
        bb.emit_func_output(y)
    return bb.get()


def numpy_conv(x: np.ndarray, wq: np.ndarray, stride: int, pad: int, dil: int) -> np.ndarray:
    """Integer reference: products of integer-valued inputs summed in int64, NCHW/OIHW."""
    co, _, kh, kw = wq.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (xp.shape[2] - dil * (kh - 1) - 1) // stride + 1
    ow = (xp.shape[3] - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((x.shape[0], co, oh, ow), np.int64)
    for ry in range(kh):
        for rx in range(kw):
            y0, x0 = ry * dil, rx * dil
            patch = xp[:, :, y0:y0 + stride * (oh - 1) + 1:stride, x0:x0 + stride * (ow - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", patch, wq[:, :, ry, rx].astype(np.int64))
    return out


CONVS = {  # ci, co, h, w, k, stride, pad, dilation
    "3x3": (32, 64, 16, 16, 3, 1, 1, 1),
    "odd_width_13x11": (20, 24, 13, 11, 3, 1, 1, 1),
    "ci6_not_multiple_of_4_stride2": (6, 40, 9, 7, 3, 2, 1, 1),
    "ci3_co3": (3, 3, 8, 10, 3, 1, 1, 1),
    "dilation2": (16, 16, 10, 10, 3, 1, 2, 2),
    "1x1_co17": (24, 17, 8, 8, 1, 1, 0, 1),
}


@pytest.mark.parametrize("name", [n if n in ("3x3", "ci6_not_multiple_of_4_stride2")  # the fast smoke
                                  else pytest.param(n, marks=pytest.mark.slow) for n in CONVS])
def test_int8_conv_bit_exact(name, target):
    ci, co, h, w, k, stride, pad, dil = CONVS[name]
    rng = np.random.default_rng(0)
    wq = rng.integers(-128, 128, (co, ci, k, k)).astype(np.int8)
    vm, opt, _ = build(int_conv_module(ci, h, w, wq, stride, pad, dil), target)
    assert "int8" in schedules(opt)
    for n in (1, 2):
        x = rng.integers(0, 256, (n, ci, h, w)).astype(np.uint8)   # extremes included: no saturation
        (got,) = run(vm, x)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, numpy_conv(x, wq, stride, pad, dil))


@pytest.mark.parametrize("ci,co,h,w,s", [(6, 40, 4, 7, 2)] + [pytest.param(*p, marks=pytest.mark.slow)
                                                              for p in ((32, 16, 6, 5, 2), (16, 24, 3, 3, 3))])
def test_int8_upconv_bit_exact(ci, co, h, w, s, target):
    """conv2d_transpose with kernel == stride (the UNet up-conv), CI not a multiple of 4 included."""
    rng = np.random.default_rng(1)
    wq = rng.integers(-128, 128, (ci, co, s, s)).astype(np.int8)      # IOHW
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((tvm.tirx.Var("N", "int64"), ci, h, w), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(relax.op.nn.conv2d_transpose(x, relax.const(wq), strides=s, out_dtype="int32"))
        bb.emit_func_output(y)
    vm, opt, _ = build(bb.get(), target)
    assert "int8" in schedules(opt)
    xv = rng.integers(0, 256, (2, ci, h, w)).astype(np.uint8)
    ref = np.einsum("nihw,icab->nchawb", xv.astype(np.int64), wq.astype(np.int64)).reshape(2, co, h * s, w * s)
    np.testing.assert_array_equal(run(vm, xv)[0], ref)


def test_int8_conv_uses_vpdpbusd(target):
    wq = np.random.default_rng(1).integers(-128, 128, (32, 32, 3, 3)).astype(np.int8)
    _, _, ex = build(int_conv_module(32, 12, 12, wq, 1, 1, 1), target)
    asm = "\n".join(m.inspect_source("asm") for m in ex.mod.imports if m.kind == "llvm")
    assert "vpdpbusd" in asm


# ---- the QDQ rewrite -------------------------------------------------------------------------------

def qdq_conv_model(act_dtype: int, float_conv_first: bool = False, upconv: bool = False) -> onnx.ModelProto:
    """input → QuantizeLinear (per tensor, u8 or s8) → DequantizeLinear → Conv 3x3 pad 1 (or
    ConvTranspose k2s2 with `upconv`; per-channel s8 weights, float bias) → output: one conv of the
    QDQ form deploy.quantize.qdq writes (after a float 1x1 conv when `float_conv_first`)."""
    rng = np.random.default_rng(0)
    ci, co, h, w = 16, 24, 12, 10
    wq = rng.integers(-127, 128, (ci, co, 2, 2) if upconv else (co, ci, 3, 3)).astype(np.int8)
    np_dt = {TensorProto.UINT8: np.uint8, TensorProto.INT8: np.int8}[act_dtype]
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "sx"),
             numpy_helper.from_array(np.array(0, np_dt), "zx"),
             numpy_helper.from_array(wq, "wq"),
             numpy_helper.from_array(rng.uniform(0.001, 0.01, co).astype(np.float32), "sw"),
             numpy_helper.from_array(np.zeros(co, np.int8), "zw"),
             numpy_helper.from_array(rng.normal(0, 0.1, co).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.5, (ci, ci, 1, 1)).astype(np.float32), "w0")]
    conv = (helper.make_node("ConvTranspose", ["xd", "wd", "b"], ["output"], kernel_shape=[2, 2], strides=[2, 2])
            if upconv else helper.make_node("Conv", ["xd", "wd", "b"], ["output"], kernel_shape=[3, 3], pads=[1] * 4))
    first = [helper.make_node("Conv", ["input", "w0"], ["x0"], kernel_shape=[1, 1])] if float_conv_first else []
    nodes = first + [helper.make_node("QuantizeLinear", ["x0" if first else "input", "sx", "zx"], ["xq"]),
                     helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
                     helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=1 if upconv else 0),
                     conv]
    out = [co, 2 * h, 2 * w] if upconv else [co, h, w]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", ci, h, w])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *out])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def op_names(mod: tvm.IRModule) -> set[str]:
    names = set()
    for f in mod.functions.values():
        if isinstance(f, relax.Function):
            relax.analysis.post_order_visit(
                f, lambda e: isinstance(e, relax.Call) and names.add(getattr(e.op, "name", "")))
    return names


@pytest.mark.parametrize("act,upconv", [(TensorProto.UINT8, False), (TensorProto.INT8, False),
                                        (TensorProto.UINT8, True)], ids=["unsigned", "signed", "upconv"])
def test_qdq_conv_becomes_integer_and_matches_onnxruntime(act, upconv, target):
    model = qdq_conv_model(act, upconv=upconv)
    mod = qdq_to_integer.to_integer()(from_onnx(model, keep_params_in_input=False))
    assert qdq_to_integer.count_integer_convs(mod) == 1
    assert not op_names(mod) & {"relax.quantize", "relax.dequantize"}
    vm, _, _ = build(mod, target)
    # inputs spread over the whole int8/uint8 range and beyond (clipping); signed ones reach -128
    mean = 0.5 if act == TensorProto.UINT8 else 0.0
    x = np.random.default_rng(3).normal(mean, 1.5, (2, 16, 12, 10)).astype(np.float32)
    (got,), (ref,) = run(vm, x), G.ort_run(model, x)
    # exact integer sums vs onnxruntime's float conv on dequantized values: float rounding only
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    # and against the integer reference: zero padding of the signed input must stay a real zero
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    lo, hi = (0, 255) if act == TensorProto.UINT8 else (-128, 127)
    xq = np.clip(np.rint(x / init["sx"]), lo, hi).astype(np.int64)
    wq = init["wq"].astype(np.int64)
    acc = (np.einsum("nihw,icab->nchawb", xq, wq).reshape(got.shape) if upconv else numpy_conv(xq, wq, 1, 1, 1))
    exact = acc.astype(np.float32) * (init["sx"] * init["sw"]).reshape(1, -1, 1, 1) + init["b"].reshape(1, -1, 1, 1)
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-6 * np.abs(exact).max())


def test_signed_upconv_stays_float():
    """A k2s2 ConvTranspose of a signed tensor is left to the float path (same numbers as QDQ)."""
    model = qdq_conv_model(TensorProto.INT8, upconv=True)
    mod = qdq_to_integer.to_integer()(from_onnx(model, keep_params_in_input=False))
    assert qdq_to_integer.count_integer_convs(mod) == 0 and "relax.nn.conv2d_transpose" in op_names(mod)


def test_signed_input_pad_stays_nhwc(target):
    """The zero-point pad of a signed input is converted to NHWC with the conv (no transposes)."""
    from deploy.compiler.backend.cpu import layout
    model = qdq_conv_model(TensorProto.INT8, float_conv_first=True)
    mod = qdq_to_integer.to_integer()(from_onnx(model, keep_params_in_input=False))
    with target:
        mod = tvm.transform.Sequential(layout.graph_passes())(mod)
    pads, perms = [], []
    relax.analysis.post_order_visit(mod["main"], lambda e: isinstance(e, relax.Call) and {
        "relax.nn.pad": pads, "relax.permute_dims": perms}.get(getattr(e.op, "name", ""), []).append(e))
    assert [[int(v) for v in c.attrs.pad_width] for c in pads] == [[0, 0, 1, 1, 1, 1, 0, 0]]
    assert float(pads[0].attrs.pad_value) == 128.0
    assert len(perms) == 2   # the graph's input to NHWC, its output back to NCHW


# ---- int8 builds through compile_build ----------------------------------------------------------

@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from deploy.data.synth import synth_dsb2018
    return synth_dsb2018(tmp_path_factory.mktemp("data"), n=8, size=64) / "images"


def write_build(tmp: Path, model: onnx.ModelProto, images: Path, name: str, mode: str = "kl_divergence") -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    onnx.save(model, tmp / f"{name}.onnx")
    doc = {"name": name,
           "frontend": {"type": "onnx", "checkpoint": f"./{name}.onnx", "shape": {"input": [1, 3, SIZE, SIZE]}},
           "backend": {"type": "tvm_vacc", "dtype": "int8",
                       "quantize": {"calibrate_mode": mode, "quantize_per_channel": True}},
           "dataset": {"type": "tvm", "path": str(images), "sampler": {"suffix": "png", "get_data_num": 8},
                       "process_ops": [{"type": "DecodeImage"}, {"type": "CvtColor", "code": "COLOR_RGB2BGR"},
                                       {"type": "Resize", "size": [SIZE, SIZE]},
                                       {"type": "Normalize", "mean": [0.5] * 3, "std": [0.5] * 3},
                                       {"type": "ToTensor"}]},
           "workspace": {"path": "./ws"}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def meta_of(prefix: Path) -> dict:
    return json.loads(prefix.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def unet_int8(tmp_path_factory, images, target):
    """mini_unet (BN, ConvTranspose, residual add → signed conv inputs, resizes, 2 heads) built int8."""
    y = write_build(tmp_path_factory.mktemp("unet"), G.mini_unet(c=16, h=SIZE, w=SIZE), images, "mini_unet")
    return y, compile_build(load_build_config(y), progress=False)


@pytest.mark.slow  # the module's mini_unet int8 build: calibration and compile
def test_int8_build_matches_qdq_model(unet_int8):
    from deploy.runtime import Model
    y, prefix = unet_int8
    folder = prefix.parent
    files = {p.name for p in folder.iterdir()}
    assert {"mod.so", "mod.json", "compile.log", "mod.qdq.onnx", "calibration.json"} <= files
    qdq = onnx.load(str(folder / "mod.qdq.onnx"))
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    got, ref = Model(prefix).run(x), G.ort_run(qdq, x)
    for o, r in zip(got, ref):
        assert o.shape == r.shape
        assert ((o >= 0.5) == (r >= 0.5)).mean() >= 0.995
        assert np.abs(o - r).max() < 0.05


@pytest.mark.slow  # the module's mini_unet int8 build: calibration and compile
def test_int8_build_uses_integer_convs(unet_int8):
    y, prefix = unet_int8
    meta = meta_of(prefix)
    q = meta["quantization"]
    assert meta["dtype"] == "int8" and q["qdq_onnx"] == "mod.qdq.onnx" and q["calibrate_mode"] == "kl_divergence"
    assert len(q["quantized"]) >= 8 and any("image input" in r for r in q["skipped"].values())
    signed = [t for t, a in q["activations"].items() if a["dtype"] == "int8"]
    assert signed, "mini_unet's residual add gives a signed conv input"
    log = (prefix.parent / "compile.log").read_text()
    n_int = int(log.split("optimize: int8: ")[1].split()[0])
    qdq = onnx.load(str(prefix.parent / "mod.qdq.onnx"))
    producer = {o: n for n in qdq.graph.node for o in n.output}
    zero_point = {i.name: i.data_type for i in qdq.graph.initializer}
    signed_up = [n for n in qdq.graph.node if n.op_type == "ConvTranspose"
                 and zero_point[producer[n.input[0]].input[2]] == TensorProto.INT8]
    assert len(signed_up) == 1 and len(q["quantized"]) == 10
    assert n_int == 9        # every quantized conv, the k2s2 ConvTranspose of a signed tensor excepted
    assert f"int8×{n_int}" in log.split("optimize: schedules ")[1].splitlines()[0]   # none fell back
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(prefix.with_suffix(".so"))],
                         capture_output=True, text=True, check=True).stdout
    assert dis.count("vpdpbusd") >= 16


@pytest.mark.slow  # two more mini_unet int8 builds after the shared one
def test_int8_calibration_cache(unet_int8, images):
    y, prefix = unet_int8
    cfg = load_build_config(y)
    meta = meta_of(prefix)
    from deploy.quantize.calibrate import calibration_images
    assert meta["sources"]["calibration"] == {"files": 8, "sha256": sha256_files(calibration_images(cfg))}
    assert meta["quantization"]["from_cache"] is False
    cached = (prefix.parent / "calibration.json").read_text()
    prefix = compile_build(cfg, progress=False)                      # rebuild: reuses calibration.json
    assert meta_of(prefix)["quantization"]["from_cache"] is True
    assert "reused" in (prefix.parent / "compile.log").read_text()
    assert (prefix.parent / "calibration.json").read_text() == cached
    prefix = compile_build(cfg, recalibrate=True, progress=False)    # --recalibrate
    assert meta_of(prefix)["quantization"]["from_cache"] is False


def small_net() -> onnx.ModelProto:
    g = G.Graph(3, SIZE, SIZE)
    x = g.relu(g.conv("input", 3, 8))
    x = g.relu(g.conv(x, 8, 16))
    x = g.add(g.conv(x, 16, 16), x)          # signed input for the head's predecessor
    x = g.relu(g.conv(x, 16, 8))
    return g.model(g.sigmoid(g.conv(x, 8, 1, k=1)))


@pytest.mark.parametrize("mode", ["kl_divergence"] + [pytest.param(m, marks=pytest.mark.slow)  # one mode is the smoke
                                  for m in ("percentile", "max", "mse")])
def test_every_calibrate_mode_compiles(mode, tmp_path, images, target):
    from deploy.runtime import Model
    y = write_build(tmp_path, small_net(), images, "small", mode)
    prefix = compile_build(load_build_config(y), progress=False)
    meta = meta_of(prefix)
    assert meta["quantization"]["calibrate_mode"] == mode and len(meta["quantization"]["quantized"]) == 3
    qdq = onnx.load(str(prefix.parent / "mod.qdq.onnx"))
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    (got,), (ref,) = Model(prefix).run(x), G.ort_run(qdq, x)
    # equal up to float rounding, which can flip an intermediate value's quantization by one step
    # (onnxruntime's optimized and unoptimized runs of this model differ by 2e-3 the same way)
    diff = np.abs(got - ref)
    assert diff.mean() < 1e-4 and diff.max() < 0.01


def test_int8_refused_for_targets_without_vnni(tmp_path, images):
    y = write_build(tmp_path, small_net(), images, "novnni")
    for spec, match in (('{"kind": "llvm", "mcpu": "skylake-avx512"}', "VNNI"),
                        ('{"kind": "cuda", "arch": "sm_90"}', "CPU")):
        with pytest.raises(UnsupportedError, match=match):
            compile_build(load_build_config(y), target=spec, progress=False)
    assert not (tmp_path / "ws").exists()


# ---- skip_dtype fp16: the convs the plan keeps in float compute in fp16 --------------------------

def fp16_skipped_reference(qdq: onnx.ModelProto, accumulate: str) -> onnx.ModelProto:
    """The QDQ model with every conv that has a float weight (the skipped ones) fed fp16-rounded
    input and weight (Cast to FLOAT16 and back), and its result rounded too when the build
    accumulates in fp16: what an fp16 conv computes, run by onnxruntime."""
    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    floats = {i.name for i in m.graph.initializer if i.data_type == TensorProto.FLOAT}
    nodes = []

    def rounded(src: str, dst: str) -> str:
        nodes.extend([helper.make_node("Cast", [src], [f"{dst}_h"], to=TensorProto.FLOAT16),
                      helper.make_node("Cast", [f"{dst}_h"], [dst], to=TensorProto.FLOAT)])
        return dst
    for n in m.graph.node:
        skipped = n.op_type in ("Conv", "ConvTranspose") and n.input[1] in floats
        if skipped:
            n.input[0], n.input[1] = rounded(n.input[0], f"{n.name}_x"), rounded(n.input[1], f"{n.name}_w")
        out = n.output[0]
        if skipped and accumulate == "float16":
            n.output[0] = f"{n.name}_y"
        nodes.append(n)
        if skipped and accumulate == "float16":
            rounded(f"{n.name}_y", out)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def test_skip_dtype_fp16_runs_the_skipped_convs_in_fp16(tmp_path, images, target):
    from deploy.compiler import skipped_fp16
    from deploy.runtime import Model
    y = write_build(tmp_path, small_net(), images, "skip16")
    doc = yaml.safe_load(y.read_text())
    doc["backend"]["quantize"]["skip_dtype"] = "fp16"
    y.write_text(yaml.safe_dump(doc, sort_keys=False))
    prefix = compile_build(load_build_config(y), progress=False)
    q = meta_of(prefix)["quantization"]
    assert q["skip_dtype"] == "fp16" and len(q["skipped"]) == 2 and len(q["quantized"]) == 3  # image conv, head
    accumulate = cpu.fp16_accumulate(target)
    assert f"optimize: int8: 2 skipped convs in fp16 (accumulating in {accumulate}" in (
        prefix.parent / "compile.log").read_text()
    qdq = onnx.load(str(prefix.parent / "mod.qdq.onnx"))
    mod = skipped_fp16.to_fp16(accumulate)(from_onnx(qdq, keep_params_in_input=False))
    assert skipped_fp16.count_fp16_convs(mod) == 2                     # exactly the skipped convs ...
    assert qdq_to_integer.count_integer_convs(qdq_to_integer.to_integer()(mod)) == 3   # ... the rest stays int8
    acc16 = skipped_fp16.to_fp16("float16")(from_onnx(qdq, keep_params_in_input=False))  # AVX512-FP16 CPUs
    assert skipped_fp16.count_fp16_convs(acc16) == 2 and "out_dtype=\"float16\"" in acc16.script()
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    (got,) = Model(prefix).run(x)
    (ref16,), (ref32,) = G.ort_run(fp16_skipped_reference(qdq, accumulate), x), G.ort_run(qdq, x)
    diff = np.abs(got - ref16)
    assert diff.mean() < 1e-5 and diff.max() < 2e-3                      # onnxruntime with fp16-rounded convs
    assert np.abs(got - ref32).mean() > 10 * diff.mean()                  # and not the fp32 convs' numbers


def test_skip_dtype_bf16_is_refused_by_the_yaml_loader(tmp_path, images):
    from deploy.errors import ConfigError
    y = write_build(tmp_path, small_net(), images, "skipbf16")
    doc = yaml.safe_load(y.read_text())
    doc["backend"]["quantize"]["skip_dtype"] = "bf16"
    y.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError, match=r"backend\.quantize\.skip_dtype: bf16 is not implemented yet"):
        load_build_config(y)
