"""CT volumes: NIfTI reading (orientation, spacing, HU window, labels) and the LiTS slice export."""
from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("nibabel")

from deploy.data.ct_slices import export_slices, find_cases, parse_slice_name, slice_name  # noqa: E402
from deploy.data.image import read_mask  # noqa: E402
from deploy.data.nifti import Volume, read_ct, read_labels, window, write_nifti  # noqa: E402
from deploy.errors import DeployError  # noqa: E402

SPACING = (0.7, 0.8, 2.5)


def ras_affine(spacing=SPACING) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def marked_volume(shape=(12, 10, 5)) -> np.ndarray:
    """int16 HU ramp with a distinct value in every voxel, so any flip or transpose shows."""
    return (np.arange(np.prod(shape)).reshape(shape) - 200).astype(np.int16)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_nifti_round_trip(tmp_path, ext):
    data = marked_volume()
    path = write_nifti(tmp_path / f"volume-0{ext}", data, ras_affine())
    vol = read_ct(path)
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, ras_affine())
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))


def test_reorients_to_canonical(tmp_path):
    """The same anatomy stored LPS (x, y flipped) or with the axes permuted reads back identically."""
    data = marked_volume()
    ras = read_ct(write_nifti(tmp_path / "ras.nii", data, ras_affine()))
    lps_affine = ras_affine() @ np.array([[-1, 0, 0, data.shape[0] - 1], [0, -1, 0, data.shape[1] - 1],
                                          [0, 0, 1, 0], [0, 0, 0, 1]], float)
    lps = read_ct(write_nifti(tmp_path / "lps.nii", data[::-1, ::-1, :], lps_affine))
    perm = [2, 0, 1]  # stored as (Z, X, Y): stored axis i is world axis perm[i]
    swap = np.zeros((4, 4))
    swap[3, 3] = 1
    for i, w in enumerate(perm):
        swap[w, i] = 1
    zxy = read_ct(write_nifti(tmp_path / "zxy.nii", np.transpose(data, perm), ras_affine() @ swap))
    for vol in (lps, zxy):
        np.testing.assert_array_equal(vol.data, ras.data)
        np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
        np.testing.assert_allclose(vol.affine[:3, :3], ras.affine[:3, :3], atol=1e-6)


def test_axial_is_radiological_view():
    data = np.zeros((4, 3, 2), np.float32)
    data[3, 2, 1] = 1  # most right (+x), most anterior (+y), upper slice
    img = Volume(data, ras_affine(), SPACING).axial(1)
    assert img.shape == (3, 4)
    assert img[0, 0] == 1 and img.sum() == 1  # anterior at the top, the patient's right on the left


def test_hu_window_values():
    hu = np.array([-1000, -200, 25, 250, 1000, 2.0 - 200], np.float32)
    np.testing.assert_array_equal(window(hu), [0, 0, 128, 255, 255, 1])
    np.testing.assert_array_equal(window(np.array([-160.0, 240.0, 40.0]), -160, 240), [0, 255, 128])
    with pytest.raises(DeployError, match="high > low"):
        window(hu, 100, 100)


def test_scale_slope_applied(tmp_path):
    import nibabel as nib

    img = nib.Nifti1Image(np.array([[[0, 10], [20, 30]]], np.int16), ras_affine())
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, tmp_path / "scaled.nii")
    np.testing.assert_array_equal(read_ct(tmp_path / "scaled.nii").data.ravel(), [-1024, -1004, -984, -964])


def test_labels_rounded_and_checked(tmp_path):
    labels = read_labels(write_nifti(tmp_path / "s.nii", np.array([[[0.0, 1.0000001], [2.0, 1.0]]]), ras_affine()))
    assert labels.data.dtype == np.uint8 and labels.data.ravel().tolist() == [0, 1, 2, 1]
    with pytest.raises(DeployError, match="0..255"):
        read_labels(write_nifti(tmp_path / "bad.nii", np.array([[[0.0, -3.0]]]), ras_affine()))


def test_missing_nibabel_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(DeployError, match=r"pip install 'segdeploy\[ct\]'"):
        read_ct(tmp_path / "volume-0.nii")


def test_unreadable_file_is_a_deploy_error(tmp_path):
    (tmp_path / "volume-0.nii").write_bytes(b"not a nifti file")
    with pytest.raises(DeployError, match="volume-0.nii"):
        read_ct(tmp_path / "volume-0.nii")
    with pytest.raises(DeployError, match="no NIfTI file"):
        read_ct(tmp_path / "volume-9.nii")


def test_slice_names():
    assert slice_name("volume-3", 42, 75) == "volume-3_slice-042.png"
    assert slice_name("volume-3", 42, 1200) == "volume-3_slice-0042.png"
    assert parse_slice_name("volume-3_slice-042.png") == ("volume-3", 42)
    assert parse_slice_name("volume-3_slice-042") == ("volume-3", 42)
    assert parse_slice_name("image_3_42.png") is None


def write_lits(folder, n=2, shape=(16, 12, 4), gz=False, seg=True) -> list[tuple[np.ndarray, np.ndarray]]:
    """n small LiTS cases with known HU and labels (labels 0/1/2 in every volume)."""
    rng = np.random.default_rng(0)
    cases = []
    for i in range(n):
        hu = rng.integers(-1000, 1000, shape).astype(np.int16)
        labels = rng.integers(0, 3, shape).astype(np.uint8)
        ext = ".nii.gz" if gz else ".nii"
        write_nifti(folder / f"volume-{i}{ext}", hu, ras_affine())
        if seg:
            write_nifti(folder / f"segmentation-{i}{ext}", labels, ras_affine())
        cases.append((hu, labels))
    return cases


@pytest.mark.parametrize("gz", [False, True])
def test_export_slices(tmp_path, gz):
    src, dst = tmp_path / "lits", tmp_path / "out"
    src.mkdir()
    cases = write_lits(src, gz=gz)
    assert export_slices(src, dst) == (2, 8)
    names = sorted(p.name for p in (dst / "CT").iterdir())
    assert names == [f"volume-{i}_slice-{k:03d}.png" for i in range(2) for k in range(4)]
    assert sorted(p.name for p in (dst / "seg").iterdir()) == names
    for i, (hu, labels) in enumerate(cases):
        vol = Volume(hu.astype(np.float32), ras_affine(), SPACING)
        lab = Volume(labels, ras_affine(), SPACING)
        for k in range(4):
            ct = read_mask(dst / "CT" / f"volume-{i}_slice-{k:03d}.png")
            assert ct.shape == (12, 16)
            np.testing.assert_array_equal(ct, window(vol.axial(k)))
            np.testing.assert_array_equal(read_mask(dst / "seg" / f"volume-{i}_slice-{k:03d}.png"), lab.axial(k))


def test_export_liver_masks_and_window(tmp_path):
    src, dst = tmp_path / "lits", tmp_path / "out"
    src.mkdir()
    hu, labels = write_lits(src, n=1)[0]
    export_slices(src, dst, hu_window=(-1000.0, 1000.0), labels="liver")
    lab = Volume(labels, ras_affine(), SPACING).axial(2)
    seg = read_mask(dst / "seg" / "volume-0_slice-002.png")
    assert set(np.unique(seg)) == {0, 255}
    np.testing.assert_array_equal(seg == 255, lab > 0)
    ct = read_mask(dst / "CT" / "volume-0_slice-002.png")
    np.testing.assert_array_equal(ct, window(Volume(hu.astype(np.float32), ras_affine(), SPACING).axial(2), -1000, 1000))


def test_export_without_segmentation_and_mismatch(tmp_path):
    from deploy.data.readers import DataWarning

    src = tmp_path / "lits"
    src.mkdir()
    write_lits(src, n=1, seg=False)
    with pytest.warns(DataWarning, match="no segmentation"):
        assert export_slices(src, tmp_path / "out") == (1, 4)
    assert not (tmp_path / "out" / "seg").exists()
    write_nifti(src / "segmentation-0.nii", np.zeros((16, 12, 3), np.uint8), ras_affine())
    with pytest.raises(DeployError, match="shape"):
        export_slices(src, tmp_path / "out2")
    with pytest.raises(DeployError, match="no LiTS volumes"):
        find_cases(tmp_path / "out")


def test_slices_cli(tmp_path):
    from click.testing import CliRunner

    from deploy.data.cli import data_group

    src = tmp_path / "lits"
    src.mkdir()
    write_lits(src, n=1)
    res = CliRunner().invoke(data_group, ["slices", str(src), str(tmp_path / "out"), "--window", "-100", "300",
                                          "--labels", "liver"])
    assert res.exit_code == 0, res.output
    assert "wrote 4 slices of 1 volumes" in res.output
    assert len(list((tmp_path / "out" / "seg").iterdir())) == 4


# ----------------------------------------------------------------------------- the synthetic LiTS set
@pytest.fixture(scope="module")
def lits(tmp_path_factory):
    from deploy.data.synth_ct import synth_lits

    return synth_lits(tmp_path_factory.mktemp("lits"), n=3, seed=0, size=64, slices=12)


def test_synth_lits_layout_and_affine(lits):
    import nibabel as nib

    assert sorted(p.name for p in lits.iterdir()) == [f"{k}-{i}.nii" for k in ("segmentation", "volume")
                                                      for i in range(3)]
    raw = nib.load(lits / "volume-0.nii")
    assert raw.shape == (64, 64, 12) and raw.get_data_dtype() == np.int16
    assert nib.aff2axcodes(raw.affine) == ("L", "P", "S")  # stored flipped: readers must reorient
    vol, seg = read_ct(lits / "volume-0.nii"), read_labels(lits / "segmentation-0.nii")
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    sx, sy, sz = vol.spacing
    assert sx == pytest.approx(sy) and 5.0 < sx < 6.0 and sz == pytest.approx(5.0)  # 360 mm / 64 voxels
    np.testing.assert_allclose(seg.affine, vol.affine)


def test_synth_lits_hu_and_labels(lits):
    vols = [read_ct(lits / f"volume-{i}.nii").data for i in range(3)]
    segs = [read_labels(lits / f"segmentation-{i}.nii").data for i in range(3)]
    assert set(np.unique(np.concatenate([s.ravel() for s in segs]))) == {0, 1, 2}
    for hu, seg in zip(vols, segs):
        assert np.median(hu[seg == 1]) == pytest.approx(62, abs=15)  # liver
        assert np.median(hu[:3, :3, :]) == pytest.approx(-1000, abs=30)  # air in the corner
        assert np.percentile(hu, 99.9) > 400  # bone
        inside = (seg == 0) & (hu > -300)
        assert -120 < np.median(hu[inside]) < 80  # fat and soft tissue
        slab = np.flatnonzero((seg > 0).any(axis=(0, 1)))
        assert 0 < len(slab) < seg.shape[2]  # the liver spans some, not all, slices
        if (seg == 2).any():
            assert np.median(hu[seg == 2]) < np.median(hu[seg == 1]) - 10  # hypodense tumours
    # liver on the patient's right (+x in RAS+)
    assert all(np.argwhere(s == 1)[:, 0].mean() > s.shape[0] / 2 for s in segs)


def test_synth_lits_seeded_prefix_and_refusal(lits, tmp_path):
    from deploy.data.synth_ct import synth_lits

    again = synth_lits(tmp_path / "again", n=2, seed=0, size=64, slices=12)
    for name in ("volume-1.nii", "segmentation-1.nii"):
        assert (again / name).read_bytes() == (lits / name).read_bytes()
    other = synth_lits(tmp_path / "other", n=1, seed=1, size=64, slices=12)
    assert (other / "volume-0.nii").read_bytes() != (lits / "volume-0.nii").read_bytes()
    with pytest.raises(DeployError, match="would not write"):
        synth_lits(again, n=1, size=64, slices=12)
    with pytest.raises(DeployError, match="slices >= 4"):
        synth_lits(tmp_path / "x", slices=2)


def test_synth_lits_cli_then_slices(tmp_path):
    from click.testing import CliRunner

    from deploy.data.cli import data_group

    res = CliRunner().invoke(data_group, ["synth", "lits", str(tmp_path / "lits"), "--n", "1", "--size", "48",
                                          "--slices", "6"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 CT volumes (48x48x6, seed 0)" in res.output
    assert export_slices(tmp_path / "lits", tmp_path / "slices") == (1, 6)
    seg = np.stack([read_mask(p) for p in sorted((tmp_path / "slices" / "seg").iterdir())], axis=-1)
    labels = read_labels(tmp_path / "lits" / "segmentation-0.nii")
    np.testing.assert_array_equal(seg, np.stack([labels.axial(k) for k in range(6)], axis=-1))


# ----------------------------------------------------------------------------- volume metrics
def dice(p: np.ndarray, g: np.ndarray) -> float:
    total = p.sum() + g.sum()
    return 2.0 * (p & g).sum() / total if total else 1.0


def random_cases(rng, n=3, shape=(10, 12, 5)):
    """(gt, pred) label volumes 0/1/2; the prediction is the GT with noise (case 1 has no tumour at all)."""
    cases = {}
    for i in range(n):
        gt = rng.choice(3, shape, p=[0.6, 0.3, 0.1]).astype(np.uint8)
        pred = np.where(rng.random(shape) < 0.2, rng.integers(0, 3, shape), gt).astype(np.uint8)
        if i == 1:
            gt[gt == 2], pred[pred == 2] = 1, 1
        cases[f"volume-{i * 5}"] = (gt, pred)
    return cases


def test_volume_dice_matches_numpy():
    from deploy.data.volume_metrics import VolumeScores

    cases = random_cases(np.random.default_rng(0))
    scores = VolumeScores()
    for vol, (gt, pred) in cases.items():
        for k in range(gt.shape[2]):
            assert scores.update(slice_name(vol, k, gt.shape[2]), pred[..., k], gt[..., k], binary=False)
    assert not scores.update("not_a_slice.png", pred[..., 0], gt[..., 0], binary=False)
    s = scores.summary()
    assert s["volumes"] == 3 and s["slices"] == 15
    assert list(s["cases"]) == ["volume-0", "volume-5", "volume-10"]  # natural order
    per = {v: {"liver": dice(p > 0, g > 0), "tumour": dice(p == 2, g == 2)} for v, (g, p) in cases.items()}
    for v in cases:
        assert s["cases"][v] == pytest.approx(per[v], abs=1e-12)
    assert s["cases"]["volume-5"]["tumour"] == 1.0  # no tumour in GT or prediction
    for k in ("liver", "tumour"):
        assert s["per_case"][k] == pytest.approx(np.mean([per[v][k] for v in cases]), abs=1e-12)
        g_all = np.concatenate([g.ravel() for g, _ in cases.values()])
        p_all = np.concatenate([p.ravel() for _, p in cases.values()])
        pm, gm = (p_all > 0, g_all > 0) if k == "liver" else (p_all == 2, g_all == 2)
        assert s["global"][k] == pytest.approx(dice(pm, gm), abs=1e-12)
    assert s["global"]["liver"] != pytest.approx(s["per_case"]["liver"], abs=1e-9)  # pooled, not averaged


def test_volume_dice_binary_and_ignore():
    from deploy.data.volume_metrics import VolumeScores, volume_lines

    gt = np.array([[0, 1], [1, 255]], np.uint8)
    pred = np.array([[1, 1], [0, 2]], np.uint8)
    multi = VolumeScores()
    multi.update("volume-1_slice-000.png", pred, gt, binary=False)
    assert multi.summary()["global"] == {"liver": pytest.approx(2 * 1 / (2 + 2)), "tumour": 1.0}  # 255 left out
    binary = VolumeScores()
    binary.update("volume-1_slice-000.png", pred != 0, gt == 1, binary=True)
    s = binary.summary()
    assert list(s["global"]) == ["liver"] and s["global"]["liver"] == pytest.approx(2 * 1 / (3 + 2))
    assert volume_lines(s) == ["Liver Dice per case: 40.000, global Dice: 40.000 (1 volumes, 1 slices)"]
    assert VolumeScores().summary() is None


def test_eval_prints_volume_dice(tmp_path):
    """`deploy eval` on exported slices with 3-class outputs prints and stores LiTS volume Dice."""
    import json

    from click.testing import CliRunner

    from deploy.cli import cli

    src = tmp_path / "lits"
    src.mkdir()
    write_lits(src, n=2, shape=(8, 8, 3))
    export_slices(src, tmp_path / "slices")
    out = tmp_path / "out"
    out.mkdir()
    rng = np.random.default_rng(3)
    names, gts, preds = [], {}, {}
    for p in sorted((tmp_path / "slices" / "seg").iterdir()):
        gt = read_mask(p)
        pred = np.where(rng.random(gt.shape) < 0.3, rng.integers(0, 3, gt.shape), gt)
        np.savez(out / f"{p.stem}.npz", output_0=np.eye(3, dtype=np.float32)[pred].transpose(2, 0, 1)[None])
        names.append(str(tmp_path / "npz" / f"{p.stem}.npz"))
        vol = parse_slice_name(p.name)[0]
        gts.setdefault(vol, []).append(gt)
        preds.setdefault(vol, []).append(pred)
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    res = CliRunner().invoke(cli, ["eval", "--src_dir", str(tmp_path / "slices" / "CT"), "--gt_dir",
                                   str(tmp_path / "slices" / "seg"), "--input_npz_path", str(tmp_path / "list.txt"),
                                   "--out_npz_dir", str(out), "--draw_dir", str(tmp_path / "d"), "--num-classes", "3"])
    assert res.exit_code == 0, res.output
    vols = json.loads((tmp_path / "d" / "summary.json").read_text())["volumes"]
    g, p = np.stack(gts["volume-1"]), np.stack(preds["volume-1"])
    assert vols["cases"]["volume-1"]["liver"] == pytest.approx(dice(p > 0, g > 0), abs=1e-12)
    assert f"Liver Dice per case: {vols['per_case']['liver'] * 100:.3f}" in res.output
    assert "Tumour Dice per case" in res.output and "(2 volumes, 6 slices)" in res.output
    assert "## Volumes (2 volumes, 6 slices" in (tmp_path / "d" / "summary.md").read_text()


# ----------------------------------------------------------------------------- the CT seed model
def test_lits_set_layout_is_what_the_build_yaml_calibrates_on(tmp_path):
    from deploy import catalogue
    from deploy.config import load_build_config
    from deploy.data.sets import synthetic_set

    dirs = synthetic_set("lits", tmp_path, n=30, seed=0)  # 30 slices: 2 volumes of 24
    assert dirs.images == tmp_path / "lits_liver" / "CT" and len(list(dirs.images.iterdir())) == 48
    assert {int(v) for p in dirs.masks.iterdir() for v in np.unique(read_mask(p))} <= {0, 255}
    assert synthetic_set("lits", tmp_path, n=1000, seed=5) == dirs  # made once, then reused
    m = catalogue.get("unet3p_liver", deployable=True)
    path = load_build_config(m.build_yaml).dataset.path
    assert path.relative_to(catalogue.REPO / "workspace" / "data") == dirs.images.relative_to(tmp_path)


@pytest.mark.zoo
def test_ct_training_finds_slices_and_keeps_their_orientation(tmp_path):
    pytest.importorskip("torch")
    from deploy.data.sets import synthetic_set
    from deploy.zoo import train as T

    dirs = synthetic_set("lits", tmp_path, n=24, seed=0)
    for where in (tmp_path, dirs.root):
        pairs = T.find_pairs(where, "lits")
        assert len(pairs) == 24 and pairs[0].image.parent == dirs.images and pairs[0].mask.parent == dirs.masks
    x = np.random.default_rng(0).random((3, 3, 8, 8)).astype(np.float32)
    for step in range(10):
        xb, _ = T.draw_batch(x, x[:, :1], 4, seed=0, step=step, augment=T.AUGMENT["lits"])
        assert all(any(np.array_equal(a, b) for b in x) for a in xb)  # never flipped or turned


@pytest.mark.slow  # trains
@pytest.mark.zoo
def test_zoo_prepare_trains_the_liver_unet3p(tmp_path):
    pytest.importorskip("torch")
    import json

    import onnx

    from deploy.zoo.prepare import prepare

    onnx_file = prepare("unet3p_liver", tmp_path / "zoo", tmp_path / "data", steps=2, width=0.125, batch=2,
                        progress=False, num_threads=1, log=lambda m: None)
    assert onnx_file.name == "unet3p_liver-128.onnx"
    graph = onnx.load(str(onnx_file)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:] == [3, 128, 128]
    info = json.loads(onnx_file.with_suffix(".json").read_text())
    assert info["config"]["augment"] == "none" and info["metrics"]["images"] > 0
    assert (tmp_path / "data" / "lits" / "volume-0.nii").is_file()
    assert len(list((tmp_path / "data" / "lits_liver" / "seg").iterdir())) == 9 * 24  # 200 slices asked


@pytest.mark.zoo
def test_liver_tumour_unet_softmax_and_class_targets(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.nn import functional as F

    from deploy.data.sets import synthetic_set
    from deploy.zoo import models as M
    from deploy.zoo import train as T

    torch.manual_seed(0)
    out = M.create("unet_lits", 0.125).eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 3, 32, 32)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 32, 32))
    logits = torch.randn(2, 3, 4, 4)
    ids = torch.randint(0, 3, (2, 1, 4, 4)).float()
    ids[0, 0, 0, 0] = 255  # ignored
    torch.testing.assert_close(T.loss_of([torch.softmax(logits, 1)], ids),
                               F.cross_entropy(logits, ids[:, 0].long(), ignore_index=255))
    pairs = T.find_pairs(synthetic_set("lits_classes", tmp_path, n=24, seed=0).root, "lits_classes")
    _, y = T.load_set(pairs, "unet_lits", 64)
    assert y.shape == (24, 1, 64, 64) and set(np.unique(y)) <= {0.0, 1.0, 2.0} and (y == 2).any()


@pytest.mark.slow  # trains
@pytest.mark.zoo
def test_zoo_prepare_trains_the_liver_tumour_unet(tmp_path):
    pytest.importorskip("torch")
    import json

    import onnxruntime as ort

    from deploy.zoo.prepare import prepare

    onnx_file = prepare("unet_lits", tmp_path / "zoo", tmp_path / "data", steps=2, width=0.125, batch=2,
                        progress=False, num_threads=1, log=lambda m: None)
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 128, 128), np.float32)})
    assert y.shape == (1, 3, 128, 128) and np.allclose(y.sum(1), 1, atol=1e-5)
    info = json.loads(onnx_file.with_suffix(".json").read_text())
    assert info["metrics"]["images"] > 0 and 0 <= info["metrics"]["iou"] <= 1
    assert len(list((tmp_path / "data" / "lits_classes" / "seg").iterdir())) == 9 * 24
