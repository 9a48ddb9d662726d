"""`make bench`, runstream part: end-to-end images/s of `deploy run` at batch 8 against the
model-only throughput `deploy perf` measures (bar: ≥ 90 %), on UNet++ fp32."""
from __future__ import annotations

from pathlib import Path

from deploy.bench import models, report
from deploy.tools import bench_stream

MODEL = "unetpp"


def run(work: Path, batches=(8,), runs: int = 20) -> dict:
    from deploy.compiler import compile_build
    onnx_path = models.bench_onnx(MODEL, work)
    prefix = compile_build(models.bench_config(MODEL, onnx_path, work, "fp32"), progress=False)
    vdsp = models.REPO / "vdsp_params" / "unetzoo-unetpp-vdsp_params.json"
    result = bench_stream.run(work / "stream", prefix, vdsp, batch=max(batches), images=max(128, 8 * runs))
    return {"machine": report.machine(), **result}


def markdown(result: dict) -> str:
    rows = [[result["model"], result["batch"], result["images"], result["model_only_qps"], result["stream_ips"],
             f"{100 * result['ratio']:.1f}%", "yes" if result["ok"] else "NO"]]
    return ("# Runstream benchmark\n\nEnd-to-end `deploy run` (decode, vdsp preprocessing, inference, post, writing) "
            f"vs model-only `deploy perf` throughput, {result['machine']['cpu']}.\n\n"
            + report.table(["model", "batch", "images", "model-only img/s", "runstream img/s", "ratio", f"≥ {100 * result['bar']:.0f}%"], [rows[0]]))
