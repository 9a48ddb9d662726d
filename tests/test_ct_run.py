"""`deploy run` on a folder of CT volumes: the same per-slice outputs as a run on the exported slices,
volumes.csv against a direct numpy computation, --resume, the HU window option, and the per-volume
montages of `deploy eval --draw_dir`. Small synthetic volumes and two tiny compiled models."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("nibabel")

from deploy.cli import cli, main  # noqa: E402
from deploy.data.ct_slices import export_slices, parse_slice_name  # noqa: E402
from deploy.data.image import read_mask  # noqa: E402
from deploy.data.nifti import read_labels  # noqa: E402
from deploy.errors import DeployError  # noqa: E402
from deploy.tools import report  # noqa: E402
from deploy.tools.run import run  # noqa: E402

SIZE, SLICE = 32, 48  # model input; slice side (the GT is resized to the model's size, as for any image)


def tiny(classes: int) -> onnx.ModelProto:
    """A 1x1 conv on the grey level x in [-1, 1]: one channel through a sigmoid (bright = foreground), or
    three class scores (dark background, mid-grey 'tumour', brighter liver), so every class turns up."""
    if classes == 1:
        w, b = np.full((1, 3, 1, 1), 2.0, np.float32), np.array([1.0], np.float32)
    else:  # background for x < -0.3, tumour up to 0.09 (about 55 HU), liver above
        w = np.repeat(np.array([-3.0, 3.0, 0.0], np.float32)[:, None], 3, axis=1)[..., None, None] / 3
        b = np.array([-0.9, -0.27, 0.0], np.float32)
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["s"], kernel_shape=[1, 1]),
             helper.make_node("Sigmoid" if classes == 1 else "Identity", ["s"], ["output"])]
    graph = helper.make_graph(
        nodes, f"tiny{classes}", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", classes, SIZE, SIZE])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def compile_tiny(root: Path, classes: int) -> Path:
    from deploy.compiler import compile_build
    from deploy.config import load_build_config

    name = f"tiny{classes}"
    onnx.save(tiny(classes), root / f"{name}.onnx")
    (root / f"{name}.yaml").write_text(
        f"name: {name}\n"
        f"frontend: {{type: onnx, checkpoint: ./{name}.onnx, dtype: fp32, shape: {{input: [1, 3, {SIZE}, {SIZE}]}}}}\n"
        "backend: {type: tvm_vacc, dtype: fp32}\nworkspace: {path: ./ws}\n")
    return compile_build(load_build_config(root / f"{name}.yaml"), progress=False)


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """Two synthetic volumes (48x48x6), their exported slices both ways, the two models and a vdsp JSON."""
    from deploy.data.synth_ct import synth_lits

    root = tmp_path_factory.mktemp("ct")
    volumes = synth_lits(root / "lits", n=2, seed=0, size=SLICE, slices=6)
    for labels in ("liver", "classes"):
        export_slices(volumes, root / labels, labels=labels)
    (root / "vdsp.json").write_text(json.dumps({
        "OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR",
        "OpConfig": {"IimageFormat": "RGB_PLANAR", "IimageWidth": SLICE, "IimageHeight": SLICE,
                     "IimageWidthPitch": SLICE, "IimageHeightPitch": SLICE, "OimageWidth": SIZE,
                     "OimageHeight": SIZE, "Mean": [0.5, 0.5, 0.5], "Std": [0.5, 0.5, 0.5],
                     "NormaType": "DIV255_MINUSMEAN_DIVSTD", "ColorCvtCode": "RGB2BGR", "ResizeType": "BILINEAR_CV"}}))
    return {"root": root, "volumes": volumes, "vdsp": root / "vdsp.json",
            "models": {"liver": compile_tiny(root, 1), "classes": compile_tiny(root, 3)}}


@pytest.fixture(scope="module")
def runs(ct):
    """Per label mode: (the run on the volumes, the run on the exported slices), each its folder and summary."""
    out = {}
    for mode, prefix in ct["models"].items():
        a = ct["root"] / f"run_volumes_{mode}"
        b = ct["root"] / f"run_slices_{mode}"
        sa = run(ct["volumes"], prefix, ct["vdsp"], a, batch=4, progress=False)
        sb = run(ct["root"] / mode / "CT", prefix, ct["vdsp"], b, ct["root"] / mode / "seg", batch=4, progress=False)
        out[mode] = (a, sa), (b, sb)
    return out


def dice(p: np.ndarray, g: np.ndarray) -> float:
    total = p.sum() + g.sum()
    return 2.0 * (p & g).sum() / total if total else 1.0


def read_volumes_csv(path: Path) -> dict[str, dict[str, float]]:
    lines = path.read_text().splitlines()
    keys = lines[0].split(",")[1:]
    return {cells[0]: dict(zip(keys, map(float, cells[1:]))) for cells in (line.split(",") for line in lines[1:])}


@pytest.mark.parametrize("mode", ["liver", "classes"])
def test_run_on_volumes_matches_run_on_exported_slices(ct, runs, mode):
    (a, sa), (b, sb) = runs[mode]
    rows_a, rows_b = report.read_rows(a / "results.csv"), report.read_rows(b / "results.csv")
    assert sorted(rows_a) == sorted(rows_b) and len(rows_a) == 12
    for name in rows_a:
        assert rows_a[name].status == rows_b[name].status == "ok"
        assert (rows_a[name].iou, rows_a[name].dice) == (rows_b[name].iou, rows_b[name].dice)
        stem = Path(name).stem
        for suffix in (".png", "_model.png"):
            assert (a / f"{stem}{suffix}").read_bytes() == (b / f"{stem}{suffix}").read_bytes()
        with np.load(a / f"{stem}.npz") as za, np.load(b / f"{stem}.npz") as zb:
            np.testing.assert_array_equal(za["output_0"], zb["output_0"])
    assert sa["mean_iou"] == sb["mean_iou"] and sa["volumes"] == sb["volumes"]
    assert (a / "volumes.csv").read_bytes() == (b / "volumes.csv").read_bytes()
    settings = json.loads((a / "run.json").read_text())
    assert settings["images"]["hu_window"] == [-200.0, 250.0]


@pytest.mark.parametrize("mode", ["liver", "classes"])
def test_volumes_csv_is_the_numpy_dice(ct, runs, mode):
    """Per-case and global Dice from the saved model-size masks and the segmentation volumes, directly."""
    (a, summary), _ = runs[mode]
    binary = mode == "liver"
    structures = {"liver": lambda x: (x == 1) | (x == 2)} if binary else \
        {"liver": lambda x: (x == 1) | (x == 2), "tumour": lambda x: x == 2}
    per, pooled = {}, {k: ([], []) for k in structures}
    for i in range(2):
        seg = read_labels(ct["volumes"] / f"segmentation-{i}.nii")
        preds, gts = [], []
        for k in range(seg.num_slices):
            labels = seg.axial(k)
            if binary:
                gts.append(cv2.resize(np.where(labels > 0, 255, 0).astype(np.uint8), (SIZE, SIZE),
                                      interpolation=cv2.INTER_LINEAR) >= 125)
                preds.append(read_mask(a / f"volume-{i}_slice-{k:03d}_model.png") == 255)
            else:
                gts.append(cv2.resize(labels, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST))
                preds.append(read_mask(a / f"volume-{i}_slice-{k:03d}_model.png"))
        p, g = np.stack(preds), np.stack(gts)
        if binary:
            p, g = p.astype(np.uint8), g.astype(np.uint8)
        per[f"volume-{i}"] = {}
        for key, of in structures.items():
            per[f"volume-{i}"][key] = dice(of(p), of(g))
            pooled[key][0].append(of(p).ravel())
            pooled[key][1].append(of(g).ravel())
    table = read_volumes_csv(a / "volumes.csv")
    for vol in per:
        assert table[vol] == pytest.approx({f"{k}_dice": v for k, v in per[vol].items()}, abs=1e-12)
    for key in structures:
        assert table["per_case_mean"][f"{key}_dice"] == pytest.approx(np.mean([per[v][key] for v in per]), abs=1e-12)
        whole = dice(np.concatenate(pooled[key][0]), np.concatenate(pooled[key][1]))
        assert table["global"][f"{key}_dice"] == pytest.approx(whole, abs=1e-12)
        assert 0.0 < whole < 1.0  # the tiny models are neither perfect nor empty here
    assert summary["volumes"]["global"] == pytest.approx({k: table["global"][f"{k}_dice"] for k in structures})


def test_resume_on_volumes_keeps_the_volume_dice(ct, runs, tmp_path):
    (a, full), _ = runs["classes"]
    out = tmp_path / "resumed"
    run(ct["volumes"], ct["models"]["classes"], ct["vdsp"], out, batch=4, limit=5, progress=False)
    again = run(ct["volumes"], ct["models"]["classes"], ct["vdsp"], out, batch=4, resume=True, progress=False)
    assert again["resumed"] == 5 and again["processed"] == 7
    assert (out / "volumes.csv").read_bytes() == (a / "volumes.csv").read_bytes()


def test_segmentations_in_gt_path_or_missing(ct, runs, tmp_path):
    """Volumes in one folder, segmentations in --gt_path: the same run; without them the slices are unscored."""
    import shutil

    (a, full), _ = runs["liver"]
    vols, segs = tmp_path / "vols", tmp_path / "segs"
    for p in sorted(ct["volumes"].iterdir()):
        (vols if p.name.startswith("volume") else segs).mkdir(exist_ok=True)
        shutil.copy(p, (vols if p.name.startswith("volume") else segs) / p.name)
    split = run(vols, ct["models"]["liver"], ct["vdsp"], tmp_path / "split", segs, batch=4, progress=False)
    assert split["volumes"] == full["volumes"] and split["mean_iou"] == full["mean_iou"]
    bare = run(vols, ct["models"]["liver"], ct["vdsp"], tmp_path / "bare", batch=4, progress=False)
    assert bare["scored"] == 0 and bare["status_counts"] == {"no mask": 12} and bare["volumes"] is None
    assert not (tmp_path / "bare" / "volumes.csv").exists()
    assert (tmp_path / "bare" / "volume-1_slice-005_model.png").read_bytes() == \
        (a / "volume-1_slice-005_model.png").read_bytes()


def test_hu_window_option(ct, runs, tmp_path, capsys):
    (a, _), _ = runs["liver"]
    out = tmp_path / "narrow"
    res = CliRunner().invoke(cli, ["run", "--file_path", str(ct["volumes"]), "-m", str(ct["models"]["liver"]),
                                   "--vdsp_params", str(ct["vdsp"]), "--save_dir", str(out), "--hu-window", "0", "100"])
    assert res.exit_code == 0, res.output
    assert "Liver Dice per case:" in res.output and "(2 volumes, 12 slices)" in res.output
    assert json.loads((out / "run.json").read_text())["images"]["hu_window"] == [0.0, 100.0]
    assert any((out / p.name).read_bytes() != p.read_bytes() for p in a.glob("*_model.png"))  # another window
    with pytest.raises(DeployError, match="resume: images.hu_window"):
        run(ct["volumes"], ct["models"]["liver"], ct["vdsp"], out, resume=True, progress=False)
    for folder, window, message in ((ct["root"] / "liver" / "CT", ("0", "100"), "--hu-window applies to a folder"),
                                    (ct["volumes"], ("100", "0"), "high > low")):
        with pytest.raises(SystemExit) as exc:
            main(["run", "--file_path", str(folder), "-m", str(ct["models"]["liver"]), "--vdsp_params",
                  str(ct["vdsp"]), "--save_dir", str(tmp_path / "x"), "--hu-window", *window])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_eval_draws_volume_montages(ct, runs, tmp_path):
    """`deploy eval --draw_dir` on the run's outputs: volumes.csv equal to the run's (one scoring code),
    and volumes/<volume>.png showing a few slices of each volume."""
    (a, _), _ = runs["classes"]
    slices = ct["root"] / "classes"
    datalist = tmp_path / "list.txt"
    datalist.write_text("".join(f"{tmp_path / 'npz' / p.stem}.npz\n" for p in sorted((slices / "CT").iterdir())))
    draw = tmp_path / "draw"
    res = CliRunner().invoke(cli, ["eval", "--src_dir", str(slices / "CT"), "--gt_dir", str(slices / "seg"),
                                   "--input_npz_path", str(datalist), "--out_npz_dir", str(a), "--draw_dir",
                                   str(draw), "--num-classes", "3"])
    assert res.exit_code == 0, res.output
    assert (draw / "volumes.csv").read_bytes() == (a / "volumes.csv").read_bytes()
    montages = sorted((draw / "volumes").iterdir())
    assert [p.name for p in montages] == ["volume-0.png", "volume-1.png"]
    for p in montages:
        img = cv2.imread(str(p))
        assert img.shape[1] == 3 * (256 + 6) + 6 and img.shape[0] > 256  # 3 tiles a row, scaled to 256
        assert (np.abs(img.astype(int) - 255).sum(axis=2) > 0).mean() > 0.3  # slices drawn, not a blank page


def test_pick_slices_prefers_slices_with_liver():
    from deploy.tools.volumes import pick_slices

    names = [f"volume-1_slice-{k:03d}.png" for k in range(20)]
    shown = [5 <= k < 15 for k in range(20)]
    picked = pick_slices(names, shown)
    assert len(picked) == 6 and all(5 <= parse_slice_name(n)[1] < 15 for n in picked)
    assert picked[0] == names[5] and picked[-1] == names[14]
    assert pick_slices(names[:3], [False] * 3) == names[:3]
