"""`make bench`, compiler part: each seed model at full width, batch 1 and 8, onnxruntime fp32,
OpenVINO fp32 and OpenVINO's default precision (bf16 on CPUs that have it; when installed) vs our
TVM fp32/fp16 builds, interleaved in one process; throughput ratios against both engines at
matching precision, conv GOP/s against the measured peak of each precision, compile times and
output agreement."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deploy.bench import models, openvino, peak, report
from deploy.bench.engines import mask_agreement, max_abs, ort_engine, tvm_engine
from deploy.bench.flops import conv_flops
from deploy.bench.timing import SETTLE_S, interleaved, median_ms
from deploy.catalogue import DEPLOYABLE, MODELS
from deploy.host import usable_cores
from deploy.tools.report import markdown_table

TARGETS = {"fp32": 1.1, "fp16": 1.7, "fp32_vs_ov": 1.5}
COMPILE_TARGET_S = {"unetpp": 20.0}
# Our build -> the engines it is compared with at matching precision (OpenVINO's bf16 default is
# the precision a user gets instead of our fp16).
BASELINES = {"tvm_fp32": ("ort_fp32", "ov_fp32"), "tvm_fp16": ("ort_fp32", "ov_default")}


def run(work: Path, names=DEPLOYABLE, batches=(1, 8), runs: int = 20, dtypes=("fp32", "fp16")) -> dict:
    from deploy.compiler import compile_build
    threads = usable_cores()
    result = {"machine": report.machine(), "threads": threads, "runs": runs, "peak": peak.measure(),
              "targets": TARGETS, "models": []}
    for name in tqdm(names, desc="bench compile", unit="model"):
        onnx_path = models.bench_onnx(name, work)
        flops = conv_flops(models.load(onnx_path))
        prefixes, compile_s = {}, {}
        for dt in dtypes:
            t = time.perf_counter()
            prefixes[dt] = compile_build(models.bench_config(name, onnx_path, work, dt), progress=False)
            compile_s[dt] = time.perf_counter() - t
        entry = {"model": name, "onnx": str(onnx_path), "conv_gflop_per_image": flops / 1e9,
                 "compile_s": compile_s, "batches": []}
        for b in batches:
            size = MODELS[name].size
            x = np.random.default_rng(b).standard_normal((b, 3, size, size)).astype(np.float32)
            entry["batches"].append(measure_batch(onnx_path, prefixes, x, runs, flops / 1e9, result["peak"]))
        result["models"].append(entry)
    return result


def measure_batch(onnx_path: Path, prefixes: dict[str, Path], x: np.ndarray, runs: int, gop: float,
                  peaks: dict) -> dict:
    """One batch: every engine's outputs against onnxruntime fp32, then interleaved median times."""
    threads = usable_cores()
    engines, precisions = {"ort_fp32": ort_engine(onnx_path, x, threads)}, {"ort_fp32": "fp32"}
    if openvino.available():
        engines["ov_fp32"], _ = openvino.ov_engine(onnx_path, x, threads, "f32")
        engines["ov_default"], chosen = openvino.ov_engine(onnx_path, x, threads)
        precisions.update(ov_fp32="fp32", ov_default=openvino.PRECISIONS.get(chosen, chosen))
    for dt, prefix in prefixes.items():
        engines[f"tvm_{dt}"], precisions[f"tvm_{dt}"] = tvm_engine(prefix, x, threads), dt
    ref = engines["ort_fp32"]()
    checks = {k: {"max_abs": max_abs(ref, o), "mask_agreement": mask_agreement(ref, o)}
              for k, o in ((k, fn()) for k, fn in engines.items() if k != "ort_fp32")}
    ms = {k: median_ms(v) for k, v in interleaved(engines, runs).items()}
    return {"batch": len(x), "median_ms": ms, "precisions": precisions, "checks": checks,
            "speedup": report.ratios(ms, BASELINES),
            "conv_throughput": report.conv_throughput(ms, gop, len(x), precisions, peaks)}


def markdown(result: dict) -> str:
    first = result["models"][0]["batches"][0]
    engines, precisions = list(first["median_ms"]), first["precisions"]
    ours = [k for k in BASELINES if k in engines]
    speed, conv, agree = [], [], []
    for m in result["models"]:
        for b in m["batches"]:
            key = [m["model"], b["batch"]]
            speed.append(key + [b["median_ms"][k] for k in engines]
                         + [report.ratio_cell(b["speedup"][o], base) for o in ours for base in BASELINES[o]])
            conv.append(key + [report.throughput_cell(b["conv_throughput"][k]) for k in engines])
            agree.append(key + [x for k in engines[1:] for x in (b["checks"][k]["max_abs"],
                                                                 f"{100 * b['checks'][k]['mask_agreement']:.2f}%")])
    names = [report.label(k, precisions) for k in engines]
    ratio_header = [f"{report.LABELS[o]} ×{report.LABELS[base].split()[0]}" for o in ours for base in BASELINES[o]]
    comp = [[m["model"]] + [m["compile_s"][k] for k in m["compile_s"]] for m in result["models"]]
    return (f"# Compiler benchmark\n\n{result['machine']['cpu']}, {result['threads']} threads, median of "
            f"{result['runs']} interleaved runs ({1e3 * SETTLE_S:.0f} ms pause before each, so no engine's "
            f"spinning threads slow down the next; the order changes every round so no engine always runs "
            f"after the same one). {report.openvino_note(result['machine']['openvino'])}\n\n"
            f"`×ORT` = onnxruntime fp32 time / our time (throughput ratio); targets: fp32 ≥ {TARGETS['fp32']}×, "
            f"fp16 ≥ {TARGETS['fp16']}×. `×OV` = the OpenVINO engine at matching precision (fp32 with OV fp32, "
            f"our fp16 with OV's default); target: fp32 ≥ {TARGETS['fp32_vs_ov']}× OV fp32.\n\n"
            "## Time (ms) and ratios\n\n"
            + markdown_table(["model", "batch"] + [f"{n} ms" for n in names] + ratio_header, speed)
            + "\n## Conv layers: effective GOP/s and % of the measured peak of the precision\n\n"
            f"{peak.summary(result['peak'])} Effective = direct-conv operations / whole-model time (Winograd "
            "layers do fewer real operations, so this can exceed the peak; the rest of the model only lowers it). "
            "fp16 without AVX512-FP16 computes in fp32 and is held to the fp32 peak.\n\n"
            + markdown_table(["model", "batch"] + names, conv)
            + "\n## Agreement with onnxruntime fp32 (max abs, masks at 0.5)\n\n"
            + markdown_table(["model", "batch"] + [x for n in names[1:] for x in (f"{n} max abs", f"{n} masks")],
                             agree)
            + "\n## Compile time (s)\n\n" + markdown_table(["model"] + list(result["models"][0]["compile_s"]), comp)
            + f"\nTarget: UNet++ ≤ {COMPILE_TARGET_S['unetpp']:.0f} s.\n")
