"""`make accuracy` at CI size: the same script, width 0.25, a few training steps."""
import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")


@pytest.mark.slow
@pytest.mark.zoo
def test_accuracy_table_small(tmp_path):
    from deploy.bench.accuracy import main
    out = tmp_path / "accuracy.md"
    res = CliRunner().invoke(main, ["--models", "unetpp", "--width", "0.25", "--steps", "3", "--train-images", "12",
                                    "--eval-images", "6", "--work", str(tmp_path / "work"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.with_suffix(".json").read_text())
    acc = data["rows"][0]["acc"]
    assert set(acc) == {"fp32", "fp16", "int8"}
    assert all(0.0 <= acc[dt]["miou"] <= 100.0 for dt in acc)
    text = out.read_text()
    assert "| unetpp |" in text and "int8 KL" in text and "vendor int8 drop" in text


def test_accuracy_markdown_marks_unsupported_precisions():
    from deploy.bench.accuracy import markdown
    row = {"model": "unetpp", "data": "synthetic dsb2018, 3×96×96", "all_foreground": 20.0, "gflops": 9.7,
           "params": 9_163_428, "train_s": 600.0, "seed": 0,
           "train": {"config": {"steps": 600, "batch": 8, "precision": "bf16"}},
           "acc": {"fp32": {"miou": 80.5}, "fp16": {"miou": 80.46},
                   "int8": {"unsupported": "int8 needs AVX-512 VNNI"}}}
    text = markdown({"width": 1.0, "machine": {"cpu": "x", "cores": 2}, "rows": [row]})
    assert ("| unetpp | synthetic dsb2018, 3×96×96 | 20.000 | 80.500 | 80.460 | n/a | 0.040 | n/a | yes | 1.11 |"
            in text)
    assert "600 × 8 (bf16)" in text and "n/a — int8: int8 needs AVX-512 VNNI" in text


def test_accuracy_markdown_does_not_credit_an_untrained_model():
    from deploy.bench.accuracy import markdown
    row = {"model": "unet3p", "data": "synthetic portrait, 3×128×128", "all_foreground": 37.0, "gflops": 98.8,
           "params": 26_971_777, "train_s": 900.0, "seed": 0, "train": {"config": {"steps": 200, "batch": 4}},
           "acc": {"fp32": {"miou": 34.3}, "fp16": {"miou": 34.3}, "int8": {"miou": 34.3}}}
    text = markdown({"width": 1.0, "machine": {"cpu": "x", "cores": 2}, "rows": [row]})
    assert "| n/a: untrained |" in text and "| yes |" not in text


def _row(model: str, miou: float, volumes: dict | None = None) -> dict:
    acc = {dt: {"miou": miou, **({"volumes": volumes} if volumes else {})} for dt in ("fp32", "fp16", "int8")}
    return {"model": model, "data": "synthetic lits, 3×128×128", "all_foreground": 10.0, "gflops": 1.0,
            "params": 1_000_000, "train_s": 60.0, "seed": 0, "train": {"config": {"steps": 10, "batch": 4}},
            "acc": acc}


def test_accuracy_rows_merge_into_the_existing_table(tmp_path):
    """`--models unet3p_liver,unet_lits` updates those rows and keeps the others, in their order."""
    from deploy.bench.accuracy import merge_rows
    previous = tmp_path / "accuracy.json"
    assert merge_rows(previous, [_row("unet_lits", 1.0)], 1.0) == [_row("unet_lits", 1.0)]  # no table yet
    previous.write_text(json.dumps({"width": 1.0, "rows": [_row("unetpp", 80.0), _row("unet3p_liver", 50.0),
                                                           _row("unet", 82.0)]}))
    merged = merge_rows(previous, [_row("unet3p_liver", 90.0), _row("unet_lits", 70.0)], 1.0)
    assert [(r["model"], r["acc"]["fp32"]["miou"]) for r in merged] == [
        ("unetpp", 80.0), ("unet3p_liver", 90.0), ("unet", 82.0), ("unet_lits", 70.0)]
    assert merge_rows(previous, [_row("unet_lits", 70.0)], 0.25) == [_row("unet_lits", 70.0)]  # another width


def test_accuracy_markdown_lists_the_ct_volume_dice():
    from deploy.bench.accuracy import markdown
    vols = {"per_case": {"liver": 0.9512, "tumour": 0.4}, "global": {"liver": 0.9634, "tumour": 0.5}}
    text = markdown({"width": 1.0, "machine": {"cpu": "x", "cores": 2},
                     "rows": [_row("unetpp", 80.0), _row("unet_lits", 70.0, vols)]})
    assert "| unet_lits | synthetic lits, 3×128×128 |" in text
    assert "- unet_lits: fp32 liver 95.12 / 96.34, tumour 40.00 / 50.00; fp16 liver 95.12" in text
    assert "- unetpp" not in text


def test_accuracy_all_foreground_baseline_of_a_class_model(tmp_path):
    """A 3-class model's trivial predictor is 'liver everywhere', scored by the class-mean rule of `deploy run`."""
    import numpy as np

    from deploy.bench.accuracy import baseline
    from deploy.data.image import write_png
    from deploy.data.sets import SetDirs
    gt = np.zeros((8, 8), np.uint8)
    gt[:, 4:] = 1
    gt[:2, 6:] = 2
    write_png(tmp_path / "seg" / "a.png", gt)
    dirs = SetDirs(tmp_path, tmp_path / "CT", tmp_path / "seg")
    liver_iou = (gt == 1).sum() / 64
    assert baseline(dirs, 8, classes=3) == pytest.approx(100 * (0 + liver_iou + 0) / 3)
    write_png(tmp_path / "seg" / "a.png", np.where(gt > 0, 255, 0).astype(np.uint8))
    assert baseline(dirs, 8) == pytest.approx(100 * (gt > 0).mean())


def test_accuracy_doc_names_the_kl_algorithm_the_search_follows():
    """docs/accuracy.md (as `make accuracy` writes it) says which published algorithm kl_divergence is;
    the search's own docstring names the same function and paper."""
    from pathlib import Path

    from deploy.bench.accuracy import KL_SECTION, _wrap
    from deploy.quantize import thresholds
    doc = (Path(__file__).resolve().parents[1] / "docs" / "accuracy.md").read_text()
    assert "## The int8 threshold search\n\n" + _wrap(KL_SECTION) in doc
    for name in ("_compute_amax_entropy", "pytorch_quantization/calib/histogram.py", "Migacz", "start_bin"):
        assert name in KL_SECTION and name in thresholds.__doc__, name


def test_accuracy_markdown_names_a_non_kl_calibration():
    from deploy.bench.accuracy import markdown
    row = _row("unet3p_liver", 64.0)
    row["acc"]["int8"]["calibrate_mode"] = "mse"
    kl = _row("unetpp", 80.0)
    kl["acc"]["int8"]["calibrate_mode"] = "kl_divergence"
    text = markdown({"width": 1.0, "machine": {"cpu": "x", "cores": 2}, "rows": [row, kl]})
    assert "| 64.000 | 64.000 | 64.000 (mse) |" in text and "| 80.000 | 80.000 | 80.000 |" in text
