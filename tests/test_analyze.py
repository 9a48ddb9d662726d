"""`deploy analyze`: per-layer int8 errors (accumulated and isolated), the --max-drop search and
--apply, on a conv chain with one deliberately badly scaled conv (its calibrated threshold forced
to a twentieth: most of its input saturates), built afterwards by `deploy compile`."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner

from deploy.cli import cli
from deploy.config import load_build_config
from onnx_graphs import Graph, ort_run
from test_quantize import write_images

SIZE = 32
BAD = "conv2"      # the second quantized conv of the chain (conv0 and the head stay fp32)
MAX_DROP = 2.0     # mIoU points


def chain(seed: int = 3) -> onnx.ModelProto:
    """conv0 (3→8, fp32: image input) → conv1 … conv4 (8→8, int8) → head (8→1, fp32) → sigmoid."""
    g = Graph(3, SIZE, SIZE, seed=seed)
    x = g.relu(g.conv("input", 3, 8))
    for _ in range(4):
        x = g.relu(g.conv(x, 8, 8))
    m = g.model(g.sigmoid(g.conv(x, 8, 1, k=1)))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    for i, n in enumerate(convs):
        n.name = f"conv{i}" if i < len(convs) - 1 else "head"
    return m


def _preprocess(images: list[Path]) -> np.ndarray:
    from deploy.preprocess import Preprocessor
    cfg = load_build_config(Path(images[0]).parents[1] / "build.yaml")
    pre = Preprocessor.from_process_ops(cfg.dataset.process_ops)
    return np.stack([pre.load(p) for p in images])


def _masks_from_fp32(model: onnx.ModelProto, root: Path) -> onnx.ModelProto:
    """Centre the head's bias on the images (about half of the pixels foreground) and write the fp32
    predictions as the ground truth: fp32 scores mIoU 100, every int8 error shows."""
    images = sorted((root / "images").glob("*.png"))
    x = _preprocess(images)
    head = next(n for n in model.graph.node if n.name == "head")
    bias = next(t for t in model.graph.initializer if t.name == head.input[2])
    logit = onnx.numpy_helper.to_array(bias) - np.median(np.log(1 / ort_run(model, x)[0] - 1) * -1)
    bias.CopyFrom(onnx.numpy_helper.from_array(logit.astype(np.float32), bias.name))
    (root / "masks").mkdir()
    for p, prob in zip(images, ort_run(model, x)[0]):
        cv2.imwrite(str(root / "masks" / p.name), ((prob[0] >= 0.5) * 255).astype(np.uint8))
    return model


def _write_build(root: Path) -> Path:
    doc = {"name": "chain_int8",
           "frontend": {"type": "onnx", "checkpoint": "net.onnx", "shape": {"input": [1, 3, SIZE, SIZE]}},
           "backend": {"type": "tvm", "dtype": "int8", "quantize": {"calibrate_mode": "max"}},
           "dataset": {"path": "images", "sampler": {"suffix": "png", "get_data_num": 10},
                       "process_ops": [{"type": "DecodeImage"}, {"type": "Resize", "size": [SIZE, SIZE]},
                                       {"type": "Normalize", "mean": [0.5] * 3, "std": [0.5] * 3},
                                       {"type": "ToTensor"}]},
           "workspace": {"path": "ws"}}
    path = root / "build.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _invoke(*args) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """The chain, its build YAML, a calibration whose BAD input threshold is forced tiny, and the
    analysis with --max-drop and --apply."""
    root = tmp_path_factory.mktemp("chain")
    write_images(root / "images", n=10)
    build = _write_build(root)
    onnx.save(_masks_from_fp32(chain(), root), root / "net.onnx")
    _invoke("analyze", build, "--plan-only")
    folder = root / "ws" / "chain_int8.analysis"
    calib = json.loads((folder / "calibration.json").read_text())
    model = onnx.load(str(root / "net.onnx"))
    bad_input = next(n.input[0] for n in model.graph.node if n.name == BAD)
    calib["tensors"][bad_input]["threshold"] /= 20
    (folder / "calibration.json").write_text(json.dumps(calib))
    out = _invoke("analyze", build, "--max-drop", MAX_DROP, "--apply", "--no-progress")
    return root, folder, json.loads((folder / "analysis.json").read_text()), out


def test_bad_layer_is_worst_in_both_modes(analysed):
    root, folder, data, out = analysed
    assert data["worst"]["isolated"][0] == BAD and data["worst"]["accumulated"][0] == BAD
    assert f"{BAD}" in out and "worst" in out
    layers = {L["node"]: L for L in data["layers"]}
    assert list(layers) == ["conv1", "conv2", "conv3", "conv4"]          # graph order, edges in fp32
    assert {"conv0", "head"} == set(data["plan"]["skipped"])
    for f in ("analysis.md", "analysis.json", "sqnr.png", "calibration.json"):
        assert (folder / f).is_file()
    assert "conv2" in (folder / "analysis.md").read_text()


def test_accumulated_and_isolated_differ_as_a_chain_should(analysed):
    _, _, data, _ = analysed
    acc = {L["node"]: L["accumulated"]["sqnr_db"] for L in data["layers"]}
    iso = {L["node"]: L["isolated"]["sqnr_db"] for L in data["layers"]}
    # the first quantized conv sees exact inputs: both modes are the same measurement
    assert acc["conv1"] == pytest.approx(iso["conv1"], abs=0.05)  # (onnxruntime fuses the two models apart)
    # isolated: only the bad conv is low
    assert all(iso[n] > iso[BAD] + 15 for n in iso if n != BAD)
    # accumulated: the error entering at the bad conv stays downstream (never recovers by much)
    assert acc[BAD] < acc["conv1"] - 15
    assert acc["conv3"] <= acc[BAD] + 3 and acc["conv4"] <= acc["conv3"] + 3
    assert iso["conv3"] > acc["conv3"] + 15
    falls = {L["node"]: L["acc_fall_db"] for L in data["layers"]}
    assert falls["conv1"] is None and falls[BAD] > 15 and abs(falls["conv3"]) < 5


def test_max_drop_keeps_exactly_the_bad_layer(analysed):
    _, _, data, _ = analysed
    e2e, s = data["end_to_end"], data["search"]
    assert e2e["fp32"]["miou"] == pytest.approx(100.0) and e2e["miou_drop"] > MAX_DROP   # the budget was needed
    assert s["skip_nodes"] == [BAD] and s["result"]["met"] and s["result"]["miou_drop"] <= MAX_DROP
    assert s["steps"][0]["kept_fp32"] == [] and not s["steps"][0]["met"]


def test_applied_yaml_builds_with_the_layer_in_fp32_within_the_budget(analysed):
    from deploy.compiler.backend.cpu.target import has_features
    from deploy.compiler.target import host_target
    from deploy.data.metrics import predict, score_image
    from deploy.data.image import read_gt
    from deploy.runtime import Model

    root, folder, data, _ = analysed
    copy = Path(data["applied_yaml"])
    assert copy.parent == folder and (root / "build.yaml").read_text() != copy.read_text()
    cfg = load_build_config(copy)
    assert any(re.fullmatch(p, BAD) for p in cfg.backend.quantize.skip_nodes)
    assert cfg.frontend.checkpoint == root / "net.onnx" and cfg.artifact_dir == root / "ws" / "chain_int8"
    if not has_features(host_target(), "avx512vnni"):
        pytest.skip("this CPU has no AVX-512 VNNI: int8 builds are refused here")
    cfg.artifact_dir.mkdir(parents=True)   # the suite starts from the analysed calibration (the bad threshold)
    shutil.copyfile(folder / "calibration.json", cfg.artifact_dir / "calibration.json")
    _invoke("compile", copy, "--no-progress")
    meta = json.loads((cfg.artifact_dir / "mod.json").read_text())["quantization"]
    assert meta["from_cache"] and BAD not in meta["quantized"] and "skip_nodes" in meta["skipped"][BAD]
    assert set(meta["quantized"]) == {"conv1", "conv3", "conv4"}
    images = sorted((root / "images").glob("*.png"))
    out = Model(cfg.prefix).run(_preprocess(images))[0]
    ious = [score_image(predict(o), read_gt(root / "masks" / p.name, True))[0] for o, p in zip(out, images)]
    assert data["end_to_end"]["fp32"]["miou"] - 100 * np.mean(ious) <= MAX_DROP


def test_min_sqnr_without_masks_and_errors(analysed, tmp_path):
    root, folder, data, _ = analysed
    build = root / "build.yaml"
    res = CliRunner().invoke(cli, ["analyze", str(build), "--images", str(root / "images"), "--masks",
                                   str(tmp_path), "--max-drop", "1"])
    assert res.exit_code != 0
    (tmp_path / "imgs").mkdir()
    for p in sorted((root / "images").glob("*.png"))[:4]:
        shutil.copy(p, tmp_path / "imgs")
    out_dir = tmp_path / "an"
    res = CliRunner().invoke(cli, ["analyze", str(build), "--images", str(tmp_path / "imgs"), "--max-drop", "1",
                                   "--out-dir", str(out_dir)])
    assert res.exit_code != 0 and "--min-sqnr" in str(res.exception or res.output)
    floor = data["end_to_end"]["int8"]["output"]["sqnr_db"] + 3
    _invoke("analyze", build, "--images", tmp_path / "imgs", "--min-sqnr", floor, "--out-dir", out_dir,
            "--no-progress")
    got = json.loads((out_dir / "analysis.json").read_text())
    assert got["images"]["count"] == 4 and got["images"]["scored"] == 0 and got["end_to_end"]["fp32"]["miou"] is None
    assert got["search"]["skip_nodes"] == [BAD] and got["search"]["result"]["output_sqnr_db"] >= floor
    res = CliRunner().invoke(cli, ["analyze", str(build), "--apply"])
    assert res.exit_code == 2 and "--max-drop" in res.output


def test_skip_dtype_fp16_runs_the_float_convs_on_fp16_values(analysed):
    """With skip_dtype fp16 the int8 build stores the float convs' inputs and weights in fp16: the
    analysis's QDQ model rounds them the same way (and only them)."""
    from dataclasses import replace

    from deploy.analysis import analyze as A
    from deploy.analysis import graphs
    root, folder, _, _ = analysed
    cfg = load_build_config(root / "build.yaml")
    q16 = replace(cfg.backend.quantize, skip_dtype="fp16")
    model, p32 = A.load_plan(cfg, folder, progress=False)
    _, p16 = A.load_plan(replace(cfg, backend=replace(cfg.backend, quantize=q16)), folder, progress=False)
    m16, m32 = (graphs.quantized(model, p, keep=[BAD], expose=False) for p in (p16, p32))
    halves = [n for n in m16.graph.node if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT16]
    assert len(halves) == 2 * 3 and not any(n.op_type == "Cast" for n in m32.graph.node)  # conv0, head, BAD
    x = _preprocess(sorted((root / "images").glob("*.png")))
    a, b = ort_run(m16, x)[0], ort_run(m32, x)[0]
    assert 0 < np.abs(a - b).max() < 0.05 and np.abs(a - b).mean() < 5e-3  # int8 rounding flips amplify it


def test_in_place_changes_only_the_skip_list(analysed):
    from deploy.analysis.apply import apply, skip_patterns
    root, folder, _, _ = analysed
    own = root / "build_own.yaml"
    shutil.copyfile(root / "build.yaml", own)
    before = yaml.safe_load(own.read_text())
    assert apply(load_build_config(own), ["conv.1", BAD], folder, in_place=True) == own
    after = yaml.safe_load(own.read_text())
    assert after["backend"]["quantize"].pop("skip_nodes") == ["conv\\.1", BAD]
    assert after == before and not (folder / own.name).exists()
    [pattern] = skip_patterns(["conv.1"])   # a name is matched as itself, not as a pattern
    assert re.fullmatch(pattern, "conv.1") and not re.fullmatch(pattern, "convX1")
