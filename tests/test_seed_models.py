"""The seed models themselves (reduced width, random weights) through the whole compiler, in every
precision, against onnxruntime: fp32 numbers, fp16 masks, int8 masks against its own QDQ model."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploy import catalogue
from deploy.compiler import compile_build
from deploy.config import load_build_config
from deploy.runtime import Model
from onnx_graphs import ort_run

pytest.importorskip("torch")
pytestmark = [pytest.mark.slow, pytest.mark.zoo]  # 15 compiles of exported nets, ~2-4 min

WIDTH = 0.125


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The images folder of a few synthetic images of a data set family (made on first use), for
    int8 calibration and as test inputs."""
    from deploy.data.sets import synthetic_set
    root = tmp_path_factory.mktemp("data")

    def images(family: str) -> Path:
        if family.startswith("lits"):
            pytest.importorskip("nibabel")
        return synthetic_set(family, root, n=6, seed=1).images
    return images


def _masks(x: np.ndarray) -> np.ndarray:
    """A prediction's mask: the probability >= 0.5 (one channel) or the argmax class (more)."""
    return x >= 0.5 if x.shape[1] == 1 else x.argmax(1)


def _masks_agree(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return sum(float((_masks(x) == _masks(y)).mean()) for x, y in zip(a, b)) / len(a)


@pytest.mark.parametrize("name", catalogue.DEPLOYABLE)
def test_seed_model_matches_onnxruntime_in_every_precision(name, tmp_path, datasets):
    from deploy.zoo.export import export_onnx
    seed = catalogue.get(name)
    onnx_path = export_onnx(name, tmp_path / f"{name}.onnx", width=WIDTH, seed=2)
    images = datasets(seed.dataset)
    cfg = load_build_config(seed.build_yaml)
    cfg = replace(cfg, frontend=replace(cfg.frontend, checkpoint=onnx_path), workspace=tmp_path / "ws",
                  dataset=replace(cfg.dataset, path=images, get_data_num=6))
    model = onnx.load(str(onnx_path))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, seed.size, seed.size)).astype("float32")
    ref = ort_run(model, x)
    prefix = {dt: compile_build(cfg.with_dtype(dt), progress=False) for dt in ("fp32", "fp16", "int8")}
    got = {dt: Model(p).run({"input": x}) for dt, p in prefix.items()}
    for o, r in zip(got["fp32"], ref):
        assert float(np.abs(o - r).max()) / max(float(np.abs(r).max()), 1.0) < 1e-4
    assert _masks_agree(got["fp16"], ref) >= 0.995
    qdq = ort_run(onnx.load(str(prefix["int8"].parent / "mod.qdq.onnx")), x)
    assert _masks_agree(got["int8"], qdq) >= 0.995
