"""The seed models the benchmarks run: full width, trained weights when the zoo has them, else
seeded random weights (speed does not depend on the weights' values)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx

from deploy.catalogue import MODELS, REPO
from deploy.config import BuildConfig, load_build_config


def bench_onnx(name: str, work: Path) -> Path:
    """Trained zoo ONNX if present, else export random weights once. The export runs in a child
    process so torch never loads into the process that times TVM and onnxruntime."""
    m = MODELS[name]
    trained = REPO / "workspace" / "zoo" / m.onnx_name
    if trained.is_file():
        return trained
    out = work / "onnx" / f"{name}-{m.size}-random.onnx"
    if not out.is_file():
        subprocess.run([sys.executable, "-m", "deploy", "zoo", "export", name, "--out", str(out)], check=True)
    return out


def bench_config(name: str, onnx_path: Path, work: Path, dtype: str) -> BuildConfig:
    """The model's build YAML from build_in/build, pointed at `onnx_path` and the bench workspace."""
    cfg = load_build_config(MODELS[name].build_yaml)
    cfg = replace(cfg, frontend=replace(cfg.frontend, checkpoint=onnx_path), workspace=work / "deploy_weights")
    return cfg.with_dtype(dtype)


def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))
