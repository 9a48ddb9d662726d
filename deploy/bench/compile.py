"""`make bench`, compiler part: each seed model at full width, batch 1 and 8, onnxruntime fp32 vs
our TVM fp32/fp16 builds, interleaved in one process; throughput ratios, GFLOP/s against a
measured sgemm ceiling, compile times and output agreement."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deploy.bench import models, report
from deploy.bench.engines import mask_agreement, max_abs, ort_engine, tvm_engine
from deploy.bench.flops import conv_flops
from deploy.bench.timing import SETTLE_S, interleaved, median_ms, nominal_peak_gflops, sgemm_peak_gflops
from deploy.catalogue import DEPLOYABLE, MODELS
from deploy.host import usable_cores
from deploy.tools.report import markdown_table

TARGETS = {"fp32": 1.1, "fp16": 1.7}
COMPILE_TARGET_S = {"unetpp": 20.0}


def run(work: Path, names=DEPLOYABLE, batches=(1, 8), runs: int = 20, dtypes=("fp32", "fp16")) -> dict:
    from deploy.compiler import compile_build
    threads = usable_cores()
    result = {"machine": report.machine(), "threads": threads, "runs": runs,
              "sgemm_peak_gflops": sgemm_peak_gflops(),
              "nominal_peak_gflops": nominal_peak_gflops(), "targets": TARGETS, "models": []}
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
            engines = {"ort_fp32": ort_engine(onnx_path, x, threads)}
            engines.update({f"tvm_{dt}": tvm_engine(prefixes[dt], x, threads) for dt in dtypes})
            ref = engines["ort_fp32"]()
            outs = {k: fn() for k, fn in engines.items() if k != "ort_fp32"}
            checks = {k: {"max_abs": max_abs(ref, o), "mask_agreement": mask_agreement(ref, o)}
                      for k, o in outs.items()}
            times = interleaved(engines, runs)
            ms = {k: median_ms(v) for k, v in times.items()}
            entry["batches"].append({
                "batch": b, "median_ms": ms, "checks": checks,
                "speedup_vs_ort_fp32": {k: ms["ort_fp32"] / v for k, v in ms.items() if k != "ort_fp32"},
                "gflops": {k: flops * b / (v / 1e3) / 1e9 for k, v in ms.items()}})
        result["models"].append(entry)
    return result


def markdown(result: dict) -> str:
    peak = result["nominal_peak_gflops"]
    rows = []
    for m in result["models"]:
        for b in m["batches"]:
            sp, g = b["speedup_vs_ort_fp32"], b["gflops"]
            rows.append([m["model"], b["batch"], b["median_ms"]["ort_fp32"]]
                        + [x for k in sp for x in (b["median_ms"][k], sp[k])]
                        + [g["tvm_fp32"], f"{100 * g['tvm_fp32'] / peak:.0f}%",
                           b["checks"]["tvm_fp32"]["max_abs"],
                           b["checks"].get("tvm_fp16", {}).get("mask_agreement", "")])
    dts = [k for k in result["models"][0]["batches"][0]["speedup_vs_ort_fp32"]]
    header = (["model", "batch", "ORT fp32 ms"] + [x for k in dts for x in (f"{k} ms", f"{k} ×ORT")]
              + ["TVM fp32 GFLOP/s (effective)", "of nominal peak", "fp32 max abs vs ORT", "fp16 mask agreement"])
    comp = [[m["model"]] + [m["compile_s"][k] for k in m["compile_s"]] for m in result["models"]]
    return (f"# Compiler benchmark\n\n{result['machine']['cpu']}, {result['threads']} threads, median of "
            f"{result['runs']} interleaved runs ({1e3 * SETTLE_S:.0f} ms pause before each, so no engine's "
            f"spinning threads slow down the next). `×ORT` = onnxruntime fp32 time / our time (throughput ratio); "
            f"targets: fp32 ≥ {TARGETS['fp32']}×, fp16 ≥ {TARGETS['fp16']}×. Effective GFLOP/s = direct-conv FLOPs / "
            f"time (Winograd layers do fewer real FLOPs, so this can exceed the peak). Nominal fp32 peak "
            f"(cores × clock × 32 FLOP/cycle): {peak:.0f} GFLOP/s; numpy sgemm measured "
            f"{result['sgemm_peak_gflops']:.0f} GFLOP/s.\n\n" + markdown_table(header, rows)
            + "\n## Compile time (s)\n\n" + markdown_table(["model"] + list(result["models"][0]["compile_s"]), comp)
            + f"\nTarget: UNet++ ≤ {COMPILE_TARGET_S['unetpp']:.0f} s.\n")
