"""`make bench`, zoo part: the public networks (catalogue.PUBLIC; random weights, the zoo-public
extra) at their benchmark size (256²; PSPNet 288²), batch 1 and 8, interleaved in one process:
onnxruntime fp32 against our fp32, fp16 and int8 builds of the exporter's unchanged graph.

Per net: compile seconds per precision (int8 includes calibration on a synthetic image set),
agreement with onnxruntime (fp32: max abs, relative to the output's magnitude when it exceeds 1;
fp16: predicted labels against onnxruntime fp32; int8: labels against the QDQ model mod.qdq.onnx in
onnxruntime, which is what both should compute), non-finite outputs, throughput ratios against
onnxruntime fp32. Where our fp32 falls short of TARGETS["fp32"], the Relax VM profiler names the
PrimFuncs that cost the time (deploy.runtime.profile). A precision that fails to compile is reported with its error; the
other precisions and nets still run."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from deploy.bench import report
from deploy.bench.engines import label_agreement, ort_engine, rel_max_abs, tvm_engine
from deploy.bench.timing import SETTLE_S, interleaved, median_ms
from deploy.catalogue import PUBLIC, PUBLIC_NAMES, RECIPES, public
from deploy.config import BuildConfig, load_build_config
from deploy.host import usable_cores
from deploy.tools.report import markdown_table

TARGETS = {"fp32": 1.3, "floor": 1.0}
DTYPES = ("fp32", "fp16", "int8")
CALIBRATION_IMAGES = 20
HOT_PRIMFUNCS = 5


def run(work: Path, names=PUBLIC_NAMES, batches=(1, 8), runs: int = 20, dtypes=DTYPES) -> dict:
    for name in names:
        public(name)  # an unknown name stops here, listing the choices
    threads = usable_cores()
    result = {"machine": report.machine(), "threads": threads, "runs": runs, "targets": TARGETS, "models": []}
    for name in tqdm(names, desc="bench zoo", unit="model"):
        result["models"].append(_net(name, work, batches, runs, dtypes, threads))
    return result


def _net(name: str, work: Path, batches, runs: int, dtypes, threads: int) -> dict:
    from deploy.compiler import compile_build
    size = PUBLIC[name].size
    onnx_path = public_onnx(name, size, work)
    prefixes, compile_s, errors = {}, {}, {}
    for dt in dtypes:
        t = time.perf_counter()
        try:
            prefixes[dt] = compile_build(build_config(name, onnx_path, size, work, dt), progress=False)
            compile_s[dt] = time.perf_counter() - t
        except Exception as e:  # noqa: BLE001 - a failed build is a result of this benchmark, not its end
            errors[dt] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    entry = {"model": name, "size": size, "onnx": str(onnx_path), "compile_s": compile_s, "errors": errors,
             "compiled_batches": {dt: _compiled_batches(p) for dt, p in prefixes.items()}, "batches": []}
    for b in batches:
        x = np.random.default_rng(b).standard_normal((b, 3, size, size)).astype(np.float32)
        entry["batches"].append(_measure(onnx_path, prefixes, x, runs, threads))
    return entry


def _measure(onnx_path: Path, prefixes: dict, x: np.ndarray, runs: int, threads: int) -> dict:
    engines = {"ort_fp32": ort_engine(onnx_path, x, threads)}
    engines.update({f"tvm_{dt}": tvm_engine(p, x, threads) for dt, p in prefixes.items()})
    ref = engines["ort_fp32"]()
    checks = {}
    for k, fn in engines.items():
        if k == "ort_fp32":
            continue
        out = fn()
        against = ref if k != "tvm_int8" else ort_engine(prefixes["int8"].parent / "mod.qdq.onnx", x, threads)()
        checks[k] = {"rel_max_abs": rel_max_abs(against, out),
                     "label_agreement": label_agreement(against, out),
                     "non_finite": int(sum((~np.isfinite(o)).sum() for o in out))}
    ms = {k: median_ms(v) for k, v in interleaved(engines, runs).items()}
    speedup = {k: ms["ort_fp32"] / v for k, v in ms.items() if k != "ort_fp32"}
    entry = {"batch": int(x.shape[0]), "median_ms": ms, "checks": checks, "speedup_vs_ort_fp32": speedup}
    if "fp32" in prefixes and speedup["tvm_fp32"] < TARGETS["fp32"]:
        entry["hot_primfuncs"] = hot_primfuncs(prefixes["fp32"], x)
    return entry


def _compiled_batches(prefix: Path) -> str:
    """"any" for a symbolic-batch build, else the fixed sizes the compiler fell back to (mod.json)."""
    from deploy.runtime.suite import read_meta
    sizes = read_meta(prefix)["batch"]["functions"]
    return "any" if "*" in sizes else ",".join(sorted(sizes, key=int))


def public_onnx(name: str, size: int, work: Path) -> Path:
    """The net's ONNX with random weights (seed 0), exported once in a child process so torch never
    loads into the process that times TVM and onnxruntime."""
    out = work / "onnx" / f"{name}-{size}-random.onnx"
    if not out.is_file():
        subprocess.run([sys.executable, "-m", "deploy", "zoo", "public", "export", name, "--size", str(size),
                        "--out", str(out)], check=True)
    return out


def build_config(name: str, onnx_path: Path, size: int, work: Path, dtype: str) -> BuildConfig:
    """A build YAML for the net (the public ones ship none): its input shape, ImageNet preprocessing
    and, for int8, a synthetic calibration set (random weights make real images no more telling)."""
    from deploy.data.synth import synth_dsb2018
    images = synth_dsb2018(work / "data", n=CALIBRATION_IMAGES) / "images"
    norm, mean, std = RECIPES[PUBLIC[name].preprocess][1]
    doc = {"name": f"zoo_{name}_{dtype}",
           "frontend": {"type": "onnx", "checkpoint": str(onnx_path.resolve()), "shape": {"input": [1, 3, size, size]}},
           "backend": {"type": "tvm_vacc", "dtype": dtype,
                       "quantize": {"calibrate_mode": "kl_divergence", "quantize_per_channel": True}},
           "dataset": {"type": "tvm", "path": str(images.resolve()),
                       "sampler": {"suffix": "png", "get_data_num": CALIBRATION_IMAGES},
                       "process_ops": [{"type": "DecodeImage"}, {"type": "Resize", "size": [size, size]},
                                       {"type": "Normalize", "mean": list(mean), "std": list(std)},
                                       {"type": "ToTensor"}]},
           "workspace": {"path": str((work / "deploy_weights").resolve())}}
    path = work / "yaml" / f"zoo_{name}_{dtype}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_build_config(path)


def hot_primfuncs(prefix: Path, x: np.ndarray, top: int = HOT_PRIMFUNCS) -> list[dict]:
    """The `top` PrimFuncs by time per run (deploy.runtime.profile), with their share of the kernel
    time: what to look at when a net is slow."""
    from deploy.runtime import Model
    from deploy.runtime.profile import profile
    times = profile(Model(prefix), x, runs=3)
    kernel_ms = sum(t.ms for t in times) or 1.0
    return [{"primfunc": t.name, "calls": t.calls, "ms": t.ms, "share": t.ms / kernel_ms} for t in times[:top]]


def markdown(result: dict) -> str:
    rows, comp, hot = [], [], []
    for m in result["models"]:
        comp.append([m["model"], m["size"]] + [f"{m['compile_s'][d]:.1f}" if d in m["compile_s"] else "fails"
                                               for d in DTYPES]
                    + [" ".join(f"{d}:{b}" for d, b in m["compiled_batches"].items())])
        for b in m["batches"]:
            sp, ck = b["speedup_vs_ort_fp32"], b["checks"]
            rows.append([m["model"], b["batch"], b["median_ms"]["ort_fp32"]]
                        + [f"{sp[f'tvm_{d}']:.2f}" if f"tvm_{d}" in sp else "-" for d in DTYPES]
                        + [ck["tvm_fp32"]["rel_max_abs"] if "tvm_fp32" in ck else "-"]
                        + [f"{100 * ck[f'tvm_{d}']['label_agreement']:.2f}%" if f"tvm_{d}" in ck else "-"
                           for d in ("fp16", "int8")]
                        + [sum(c["non_finite"] for c in ck.values())])
            hot += [[m["model"], b["batch"], h["primfunc"], h["calls"], h["ms"], f"{100 * h['share']:.0f}%"]
                    for h in b.get("hot_primfuncs", [])]
    errors = [[m["model"], d, e] for m in result["models"] for d, e in m["errors"].items()]
    text = (f"# Public zoo benchmark\n\n{result['machine']['cpu']}, {result['threads']} threads, median of "
            f"{result['runs']} interleaved runs ({1e3 * SETTLE_S:.0f} ms pause before each). Random weights. "
            f"`×ORT` = onnxruntime fp32 time / our time; targets: fp32 ≥ {TARGETS['fp32']}×, every precision "
            f"≥ {TARGETS['floor']}×. fp32 error: max abs vs onnxruntime, relative when outputs exceed 1; "
            f"fp16 labels vs onnxruntime fp32, int8 labels vs the QDQ model in onnxruntime.\n\n"
            + markdown_table(["model", "batch", "ORT fp32 ms", "fp32 ×ORT", "fp16 ×ORT", "int8 ×ORT",
                              "fp32 rel max abs", "fp16 labels", "int8 labels", "non-finite"], rows)
            + "\n## Compile time (s)\n\n" + markdown_table(["model", "size", *DTYPES, "batches built"], comp))
    if errors:
        text += "\n## Builds that failed\n\n" + markdown_table(["model", "dtype", "error"], errors)
    if hot:
        text += ("\n## Where fp32 falls short: the costliest PrimFuncs (deploy.runtime.profile, per run)\n\n"
                 + markdown_table(["model", "batch", "PrimFunc", "calls", "ms", "of kernel time"], hot))
    return text
