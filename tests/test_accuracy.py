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
