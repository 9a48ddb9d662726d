"""Model zoo: exact architectures, ONNX export (matches torch in onnxruntime), training + resume,
the shipped build YAMLs / vdsp JSONs."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from deploy.zoo import export as E  # noqa: E402
from deploy.zoo import models as M  # noqa: E402
from deploy.zoo import train as T  # noqa: E402

pytestmark = pytest.mark.zoo
ROOT = Path(__file__).resolve().parents[1]

EXPECTED_PARAMS = {"unetpp": 9_163_428, "unetpp_nods": 9_163_329, "r2u_net": 39_091_393, "unet3p": 26_971_777,
                   "unet3p_ds": 26_989_637, "unet": 7_765_985, "unet3p_liver": 26_971_777, "unet_lits": 7_766_051}
N_OUT = {"unetpp": 4, "unetpp_nods": 1, "r2u_net": 1, "unet3p": 1, "unet3p_ds": 5, "unet": 1, "unet3p_liver": 1, "unet_lits": 1}
MAIN = {"unetpp": "output_3", "unet3p_ds": "output_0"}
RESIZE = {"unetpp": {("linear", "align_corners")}, "unetpp_nods": {("linear", "align_corners")},
          "r2u_net": {("nearest", "asymmetric")}, "unet3p": {("linear", "half_pixel")},
          "unet3p_ds": {("linear", "half_pixel")}, "unet": set(), "unet3p_liver": {("linear", "half_pixel")}, "unet_lits": set()}


@pytest.fixture(autouse=True)
def _threads():
    """One thread: these models are tiny, and on a shared 2-core machine two OpenMP threads that
    spin-wait on each other made the training test ~8x slower than one."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("name", M.NAMES)
def test_exact_parameter_count(name):
    assert M.num_params(M.create(name)) == EXPECTED_PARAMS[name]


def test_input_sizes_and_unknown_name():
    assert M.INPUT_SIZE == {"unetpp": 96, "unetpp_nods": 96, "r2u_net": 96, "unet3p": 128, "unet3p_ds": 128,
                            "unet": 96, "unet3p_liver": 128, "unet_lits": 128}
    from deploy.errors import DeployError
    with pytest.raises(DeployError, match="unknown model"):
        M.create("unet4")


@pytest.mark.parametrize("name", M.NAMES)
def test_forward_shapes_width_quarter(name):
    torch.manual_seed(0)
    m = M.create(name, width=0.25).eval()
    s = M.INPUT_SIZE[name]
    with torch.no_grad():
        outs = M.as_list(m(torch.randn(2, 3, s, s)))
    assert len(outs) == N_OUT[name]
    for o in outs:
        assert o.shape == (2, M.catalogue.MODELS[name].classes, s, s)
        assert float(o.min()) >= 0 and float(o.max()) <= 1  # sigmoid (softmax) inside


@pytest.mark.parametrize("name", [n if n == "unetpp" else pytest.param(n, marks=pytest.mark.slow) for n in M.NAMES])
def test_onnx_export_matches_torch(name, tmp_path):
    path = E.export_onnx(name, tmp_path / f"{name}.onnx", width=0.25, seed=3)
    proto = onnx.load(path)
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= {"Conv", "Relu", "MaxPool", "Concat", "Resize", "Add", "Sigmoid", "ConvTranspose",
                   "Softmax"}, ops
    assert "BatchNormalization" not in ops  # folded
    assert E.resize_modes(proto) == RESIZE[name]
    assert proto.opset_import[0].version == 17
    assert [i.name for i in proto.graph.input] == ["input"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N"
    assert [d.dim_value for d in dims[1:]] == [3, M.INPUT_SIZE[name], M.INPUT_SIZE[name]]
    outs = [o.name for o in proto.graph.output]
    meta = {p.key: p.value for p in proto.metadata_props}
    if N_OUT[name] == 1:
        assert outs == ["output"] and meta["main_output"] == "output"
    else:
        assert outs == [f"output_{i}" for i in range(N_OUT[name])]
        assert meta["main_output"] == MAIN[name]
    if name == "unet3p":
        assert any(a.name == "ceil_mode" and a.i == 1 for n in proto.graph.node if n.op_type == "MaxPool"
                   for a in n.attribute)
    model, _ = E.load_model(name, width=0.25, seed=3)
    s = M.INPUT_SIZE[name]
    x = np.random.default_rng(0).standard_normal((2, 3, s, s)).astype(np.float32)  # batch 2: N is symbolic
    ref = E.torch_outputs(model, x)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert len(got) == len(ref)
    for a, b in zip(ref, got):
        assert np.abs(a - b).max() < 1e-4


def test_export_is_atomic_and_reports_bad_weights(tmp_path):
    from deploy.errors import DeployError
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DeployError, match="bad.pt"):
        E.export_onnx("unet", tmp_path / "x.onnx", weights=bad, width=0.125)
    assert not (tmp_path / "x.onnx").exists()
    torch.save(M.create("unet", 0.125).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(DeployError, match="do not fit"):
        E.export_onnx("unet", tmp_path / "x.onnx", weights=tmp_path / "sd.pt", width=0.25)
    assert E.export_onnx("unet", tmp_path / "x.onnx", weights=tmp_path / "sd.pt", width=0.125).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


@pytest.fixture(scope="module")
def dsb_tiny(tmp_path_factory):
    from deploy.data.synth import synth_dsb2018
    return synth_dsb2018(tmp_path_factory.mktemp("data"), n=8, size=64)


def test_split_is_deterministic_last_fifth(dsb_tiny):
    samples = T.find_pairs(dsb_tiny)
    train_set, held = T.split(samples)
    assert len(samples) == 8 and len(held) == 2 and train_set + held == samples
    assert [s.image.name for s in held] == sorted(s.image.name for s in samples)[-2:]


def _train(data, out, steps, **kw):
    args = dict(steps=steps, batch=4, seed=1, width=0.125, lr=3e-3, size=32, progress=False, save_every=0,
                log=lambda m: None, num_threads=1)
    args.update(kw)
    return T.train("unetpp", data, out, **args)


@pytest.mark.slow  # trains
def test_train_checkpoint_resume_and_loss(dsb_tiny, tmp_path):
    full = _train(dsb_tiny, tmp_path / "a", 16)
    ck = T.load_checkpoint(full)
    assert full.name == "unetpp-32.pt" and ck["step"] == 16 and len(ck["history"]) == 16
    h = ck["history"]
    assert np.mean(h[-4:]) < np.mean(h[:4])
    assert 0.0 <= ck["metrics"]["iou"] <= 1.0 and ck["metrics"]["images"] == 2
    # interrupted at 6 steps, then resumed to 16: same weights and loss curve as one run
    _train(dsb_tiny, tmp_path / "b", 6)
    part = T.load_checkpoint(_train(dsb_tiny, tmp_path / "b", 16))
    assert part["step"] == 16
    np.testing.assert_allclose(part["history"], h, rtol=1e-5, atol=1e-6)
    for k, v in ck["model"].items():
        torch.testing.assert_close(part["model"][k], v, rtol=1e-4, atol=1e-5)
    # already done: returned as is
    assert _train(dsb_tiny, tmp_path / "b", 16) == tmp_path / "b" / "unetpp-32.pt"
    # a different config in the same folder is refused
    from deploy.errors import DeployError
    with pytest.raises(DeployError, match="different config"):
        _train(dsb_tiny, tmp_path / "b", 20, lr=1e-2)
    # the checkpoint exports (its width is taken from the checkpoint)
    onnx_path = E.export_onnx("unetpp", tmp_path / "t.onnx", weights=full)
    assert {p.key: p.value for p in onnx.load(onnx_path).metadata_props}["width"] == "0.125"


@pytest.mark.slow  # trains
def test_precision_is_recorded_and_part_of_the_config(dsb_tiny, tmp_path):
    from deploy.errors import DeployError
    with pytest.raises(DeployError, match="precision must be one of"):
        _train(dsb_tiny, tmp_path / "x", 2, precision="fp8")
    ck = T.load_checkpoint(_train(dsb_tiny, tmp_path / "a", 2, precision="bf16"))
    assert ck["config"]["precision"] == "bf16" and np.isfinite(ck["history"]).all()
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())  # fp32 master weights
    with pytest.raises(DeployError, match="precision"):
        _train(dsb_tiny, tmp_path / "a", 4, precision="fp32")
    # a checkpoint from before the field existed was trained in fp32 and resumes as such
    path = _train(dsb_tiny, tmp_path / "b", 2, precision="fp32")
    ck = T.load_checkpoint(path)
    del ck["config"]["precision"]
    T.save_checkpoint(path, ck)
    assert T.load_checkpoint(_train(dsb_tiny, tmp_path / "b", 3, precision="fp32"))["step"] == 3


def _orientations(img: np.ndarray) -> list[np.ndarray]:
    """The 8 dihedral transforms of a (C, H, W) array."""
    rots = [np.rot90(img, k, (1, 2)) for k in range(4)]
    return rots + [r[:, :, ::-1] for r in rots]


def test_augmentation_keeps_portraits_upright():
    from deploy.errors import DeployError
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 8, 8)).astype(np.float32)
    y = rng.random((3, 1, 8, 8)).astype(np.float32)
    seen = {"hflip": set(), "dihedral": set()}
    for augment, kinds in seen.items():
        for step in range(40):
            xb, yb = T.draw_batch(x, y, 4, seed=0, step=step, augment=augment)
            for a, b in zip(xb, yb):
                i, k = next((i, k) for i in range(3) for k, o in enumerate(_orientations(x[i]))
                            if np.array_equal(o, a))
                assert np.array_equal(_orientations(y[i])[k], b)  # mask transformed like its image
                kinds.add(k)
    assert seen["hflip"] == {0, 4}  # as is, or mirrored left-right: never on its side or upside down
    assert len(seen["dihedral"]) > 2
    assert T.AUGMENT == {"dsb2018": "dihedral", "portrait": "hflip", "lits": "none", "lits_classes": "none"}
    with pytest.raises(DeployError, match="augment must be"):
        T.draw_batch(x, y, 2, 0, 0, augment="rot")


@pytest.mark.slow  # trains
def test_portrait_checkpoint_records_hflip(tmp_path):
    from deploy.data.synth import synth_portrait
    data = synth_portrait(tmp_path / "data", n=4, size=64)
    ck = T.load_checkpoint(T.train("unet3p", data, tmp_path / "out", steps=1, batch=2, width=0.125, size=32,
                                   progress=False, save_every=0, log=lambda m: None, num_threads=1))
    assert ck["config"]["augment"] == "hflip"


def test_bad_data_dir(tmp_path):
    from deploy.errors import DeployError
    with pytest.raises(DeployError, match="DSB2018 layout"):
        T.find_pairs(tmp_path)


def test_preprocess_matches_vendor_recipes():
    from deploy.preprocess import Preprocessor
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    bgr = Preprocessor.for_model("unetpp", 4)(rgb)
    np.testing.assert_allclose(bgr[:, 0, 0], [-1.0, -1.0, 1.0])  # BGR, (x/255-0.5)/0.5
    rgb01 = Preprocessor.for_model("unet3p", 4)(rgb)
    np.testing.assert_allclose(rgb01[:, 0, 0], [1.0, 0.0, 0.0])  # RGB, x/255


YAMLS = ["official_unetpp", "official_r2u_net", "official_unet3p", "official_unet3p_ds", "official_unet"]
VDSP = ["unetzoo-unetpp", "unetzoo-r2u_net", "unetzoo-unet", "unet3p", "unet3p_ds"]


@pytest.mark.parametrize("stem", YAMLS)
def test_build_yaml_loads_cleanly(stem):
    from deploy.config import load_build_config
    from deploy.config.ops import CvtColor, Normalize, Resize
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_build_config(ROOT / "build_in" / "build" / f"{stem}.yaml")
    model = stem[len("official_"):]
    size = M.INPUT_SIZE[model]
    assert cfg.name == f"{stem}_fp32" and cfg.backend.dtype == "fp32"
    assert cfg.frontend.checkpoint == ROOT / "workspace" / "zoo" / f"{model}-{size}.onnx"
    assert cfg.frontend.shape == {"input": (1, 3, size, size)}
    assert cfg.workspace == ROOT / "workspace" / "deploy_weights"
    q = cfg.backend.quantize
    assert q.calibrate_mode == "kl_divergence" and q.quantize_per_channel
    ops = cfg.dataset.process_ops
    assert Resize((size, size)) in ops
    norm = next(o for o in ops if isinstance(o, Normalize))
    if model.startswith("unet3p"):
        assert cfg.dataset.path == ROOT / "workspace" / "data" / "testing" / "images"
        assert norm.norma_type == "DIV255" and not any(isinstance(o, CvtColor) for o in ops)
    else:
        assert cfg.dataset.path == ROOT / "workspace" / "data" / "dsb2018_256_val" / "images"
        assert norm == Normalize("DIV255_MINUSMEAN_DIVSTD", (0.5,) * 3, (0.5,) * 3)
        assert CvtColor("COLOR_RGB2BGR") in ops


@pytest.mark.parametrize("stem", VDSP)
def test_vdsp_json_loads_cleanly(stem):
    from deploy.config import load_vdsp_config
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = load_vdsp_config(ROOT / "vdsp_params" / f"{stem}-vdsp_params.json")
    model = stem.split("-")[-1]
    size = M.INPUT_SIZE[model]
    assert v.out_size == (size, size)
    if model.startswith("unet3p"):
        assert (v.norma_type, v.color_cvt) == ("DIV255", "NO_CHANGE")
    else:
        assert (v.norma_type, v.color_cvt, v.mean, v.std) == ("DIV255_MINUSMEAN_DIVSTD", "RGB2BGR", (0.5,) * 3,
                                                              (0.5,) * 3)


def test_cli_help_and_export(tmp_path):
    from click.testing import CliRunner

    from deploy.zoo.cli import NAMES, zoo_group
    assert NAMES == M.NAMES
    r = CliRunner().invoke(zoo_group, ["export", "unet", "--out", str(tmp_path / "u.onnx"), "--width", "0.125"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "u.onnx").is_file()


@pytest.mark.slow  # trains
def test_prepare_is_idempotent(dsb_tiny, tmp_path):
    import json

    from deploy.zoo.prepare import prepare
    logs = []
    out = prepare("unet", tmp_path / "zoo", dsb_tiny.parent, steps=2, width=0.125, batch=2, progress=False,
                  log=logs.append, num_threads=1)
    assert out == tmp_path / "zoo" / "unet-96.onnx" and out.is_file()
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["config"]["steps"] == 2 and 0 <= info["metrics"]["iou"] <= 1
    assert any("held-out IoU" in m for m in logs)
    mtime = out.stat().st_mtime_ns
    logs.clear()
    assert prepare("unet", tmp_path / "zoo", dsb_tiny.parent, log=logs.append) == out
    assert out.stat().st_mtime_ns == mtime and "cached" in logs[0]
