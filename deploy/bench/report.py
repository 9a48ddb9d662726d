"""Benchmark reports: one JSON for machines and one Markdown table for people, written atomically."""
from __future__ import annotations

import platform
from pathlib import Path

from deploy.bench import openvino, peak
from deploy.host import describe, usable_cores
from deploy.io import atomic_write_json, atomic_write_text


def machine() -> dict:
    """What the numbers were measured on, as detected (deploy.host.describe), never assumed."""
    import onnxruntime
    return {"cpu": describe(), "cores": usable_cores(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "openvino": openvino.version()}


LABELS = {"ort_fp32": "ORT fp32", "ort_int8": "ORT int8", "ov_fp32": "OV fp32", "ov_default": "OV default",
          "ov_int8": "OV int8", "tvm_fp32": "TVM fp32", "tvm_fp16": "TVM fp16", "tvm_int8": "TVM int8"}


def label(engine: str, precisions: dict[str, str]) -> str:
    """"OV default (bf16)": OpenVINO's default names the precision it chose."""
    return LABELS[engine] + (f" ({precisions[engine]})" if engine == "ov_default" else "")


def ratios(ms: dict[str, float], baselines: dict[str, tuple[str, ...]]) -> dict[str, dict[str, float]]:
    """ours -> baseline -> throughput ratio (baseline's time / ours), for the baselines that ran."""
    return {ours: {b: ms[b] / ms[ours] for b in bs if b in ms} for ours, bs in baselines.items() if ours in ms}


def conv_throughput(ms: dict[str, float], conv_gop: float, batch: int, precisions: dict[str, str],
                    peaks: dict[str, dict]) -> dict[str, dict]:
    """engine -> effective conv GOP/s (conv operations / whole-model time, so a lower bound for the
    conv layers themselves) and its percentage of the measured peak of the engine's precision."""
    out = {}
    for engine, t in ms.items():
        gops = conv_gop * batch / (t / 1e3)
        of, top = peak.peak_of(precisions[engine], peaks)
        out[engine] = {"gops": gops, "peak_precision": of, "percent_of_peak": 100 * gops / top if top else None}
    return out


def throughput_cell(t: dict) -> str:
    pct = t["percent_of_peak"]
    return f"{t['gops']:.0f} ({pct:.0f}% of {t['peak_precision']})" if pct is not None else f"{t['gops']:.0f}"


def ratio_cell(r: dict[str, float], baseline: str) -> str:
    return f"{r[baseline]:.2f}×" if baseline in r else "—"


def openvino_note(version: str | None) -> str:
    """The sentence every report carries about OpenVINO: its version, or how to get it."""
    if version is None:
        return openvino.MISSING + ": its columns show —."
    return (f"OpenVINO {version} CPU plugin, latency hint, same threads; OV default = its own precision choice "
            "(bf16 on CPUs that have it), OV int8 runs our QDQ model (mod.qdq.onnx).")


def publish(name: str, result: dict, markdown: str) -> None:
    """A report's table as the README's figure `name` (deploy.figures), stamped with the machine the
    report itself records."""
    from deploy.figures import publish as publish_figure
    publish_figure(name, markdown, machine=result["machine"]["cpu"])


def write(report_dir: Path, stem: str, data: dict, markdown: str) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = report_dir / f"{stem}.json", report_dir / f"{stem}.md"
    atomic_write_json(paths[0], data)
    atomic_write_text(paths[1], markdown)
    return paths
