"""OpenVINO as a benchmark baseline: on x86 CPUs it, not onnxruntime, is the engine a user would
pick instead of us. Optional (`pip install '.[bench]'`) and imported only by the benchmark, never
by the compile/run path; without it the bench runs and its reports say so."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from deploy.bench.engines import Engine

MISSING = "OpenVINO not installed (pip install '.[bench]')"
# OpenVINO's names for inference precisions -> the bench's precision names (peak.PRECISIONS).
PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def version() -> str | None:
    if not available():
        return None
    import openvino
    return openvino.__version__.split("-")[0]  # "2026.4.1" of "2026.4.1-22982-e213a147257-releases/2026/4"


def ov_engine(onnx_path: Path, x: np.ndarray, threads: int, precision: str | None = None) -> tuple[Engine, str]:
    """The CPU plugin on `onnx_path` reshaped to x's static shape, latency hint, `threads` threads;
    precision "f32" forces fp32, None keeps OpenVINO's default (bf16 on CPUs that have it). A QDQ
    model runs OpenVINO's int8 kernels. Returns the engine and the inference precision OpenVINO
    reports it chose (its own name: f32, bf16, f16)."""
    import openvino as ov
    core = ov.Core()
    model = core.read_model(str(onnx_path))
    model.reshape({model.inputs[0]: ov.PartialShape(list(x.shape))})
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    outputs = compiled.outputs
    chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def run() -> list:
        request.infer({0: x})
        return [request.get_tensor(o).data.copy() for o in outputs]
    return run, chosen
