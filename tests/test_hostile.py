"""Hostile input, one test per class of issue #14: what a careless or malicious user can feed the
tools (config values, file names, folders, artifacts) must end in a clear DeployError naming the
file and key or path, and must never lose or overwrite data nor give a silently wrong result."""
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.config import load_build_config
from deploy.errors import ConfigError, DeployError
from deploy.tools.evaluate import evaluate
from deploy.tools.run import run
from test_tools_e2e import vdsp_json


def _build_yaml(tmp: Path, name: str, legacy: bool = False) -> Path:
    path = tmp / "b.yaml"
    if legacy:
        path.write_text(f"model: {{name: {json.dumps(name)}, inputs: {{input: [1, 3, 8, 8]}}, checkpoint: ./m.onnx}}\n"
                        "engine: {type: vacc, dtype: fp32}\n")
    else:
        path.write_text(f"name: {json.dumps(name)}\n"
                        "frontend: {type: onnx, checkpoint: ./m.onnx, shape: {input: [1, 3, 8, 8]}}\n"
                        "backend: {type: tvm_vacc, dtype: fp32}\n")
    return path


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------- data loss
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("name", [".", "..", "...", ".hidden"])
def test_build_name_cannot_be_the_workspace_or_a_hidden_folder(tmp_path, name, legacy):
    """A name of dots is the workspace (or its parent) once joined to it: a compile would swap the whole
    folder out; a leading dot is the compiler's own temporaries and locks (`.<name>.tmp-*`)."""
    path = _build_yaml(tmp_path, name, legacy)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: (model\.)?name: .*{re.escape(repr(name))}"):
        load_build_config(path)


@pytest.mark.parametrize("names, clash", [
    (("x.png", "x_model.png"), "x_model.png"),     # x's model-size mask is x_model's mask
    (("a.png", "a.jpg"), "a.npz"),                 # same stem
    (("iou_hist.png", "b.png"), "iou_hist.png"),   # the run's own histogram
])
def test_run_refuses_colliding_output_names_before_writing(tmp_path, names, clash):
    images = tmp_path / "images"
    for n in names:
        _png(images / n)
    (tmp_path / "v.json").write_text(json.dumps(vdsp_json()))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    with pytest.raises(DeployError, match=re.escape(clash)) as e:
        run(images, tmp_path / "no_model" / "mod", tmp_path / "v.json", out, progress=False)
    assert "not found" not in str(e.value)  # refused up front, before the model is even looked at
    assert _tree(out) == {"keep.txt": b"earlier results"}


@pytest.mark.parametrize("stems, clash", [(("x", "x_overlay"), "x_overlay.png"),
                                          (("iou_hist", "y"), "iou_hist.png"),
                                          (("d1/z", "d2/z"), "z.png")])
def test_eval_refuses_colliding_drawings_before_writing(tmp_path, stems, clash):
    outs = tmp_path / "outs"
    outs.mkdir()
    lines = []
    for s in stems:
        p = tmp_path / "in" / f"{s}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez(p, input_0=np.zeros((3, 8, 8), np.uint8))
        np.savez(outs / p.name, output_0=np.zeros((1, 1, 8, 8), np.float32))
        lines.append(str(p))
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    (drawn / f"{Path(stems[0]).name}.png").write_bytes(b"an earlier drawing")
    before = _tree(drawn)
    with pytest.raises(DeployError, match=re.escape(clash)):
        evaluate(tmp_path / "list.txt", outs, draw_dir=drawn)
    assert _tree(drawn) == before
