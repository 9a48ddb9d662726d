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
