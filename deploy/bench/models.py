"""The seed models the benchmarks run: full width, trained weights when the zoo has them, else
seeded random weights (speed does not depend on the weights' values)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx

from deploy.config import BuildConfig, load_build_config

REPO = Path(__file__).resolve().parents[2]
SEED_MODELS = ("unetpp", "r2u_net", "unet3p", "unet3p_ds", "unet")
SIZES = {"unetpp": 96, "r2u_net": 96, "unet": 96, "unet3p": 128, "unet3p_ds": 128}
VDSP = {"unetpp": "unetzoo-unetpp-vdsp_params.json", "r2u_net": "unetzoo-r2u_net-vdsp_params.json",
        "unet": "unetzoo-unet-vdsp_params.json", "unet3p": "unet3p-vdsp_params.json",
        "unet3p_ds": "unet3p_ds-vdsp_params.json"}
PORTRAIT = ("unet3p", "unet3p_ds")


def bench_onnx(name: str, work: Path) -> Path:
    """Trained zoo ONNX if present, else export random weights once. The export runs in a child
    process so torch never loads into the process that times TVM and onnxruntime."""
    trained = REPO / "workspace" / "zoo" / f"{name}-{SIZES[name]}.onnx"
    if trained.is_file():
        return trained
    out = work / "onnx" / f"{name}-{SIZES[name]}-random.onnx"
    if not out.is_file():
        subprocess.run([sys.executable, "-m", "deploy", "zoo", "export", name, "--out", str(out)], check=True)
    return out


def bench_config(name: str, onnx_path: Path, work: Path, dtype: str) -> BuildConfig:
    """The model's build YAML from build_in/build, pointed at `onnx_path` and the bench workspace."""
    cfg = load_build_config(REPO / "build_in" / "build" / f"official_{name}.yaml")
    cfg = replace(cfg, frontend=replace(cfg.frontend, checkpoint=onnx_path), workspace=work / "deploy_weights")
    return cfg.with_dtype(dtype)


def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))
