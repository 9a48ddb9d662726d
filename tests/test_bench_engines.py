"""Benchmark engines and reports: the measured peak kernels, the OpenVINO baseline against
onnxruntime, and the compile/int8 reports with and without OpenVINO (no timing thresholds: the
numbers depend on the machine and its load)."""
from __future__ import annotations

import math
from pathlib import Path
import time

import numpy as np
import onnx
import pytest

from deploy.bench import openvino, peak, report
from deploy.host import has_flags
from onnx_graphs import mini_unet, ort_run

PEAK_S = 0.02  # per kernel run: enough to be positive and finite, not to be accurate


@pytest.mark.parametrize("kernel", peak.KERNELS, ids=lambda k: k.instruction)
def test_peak_kernel_compiles_and_runs_where_the_cpu_has_it(kernel, tmp_path):
    if peak.compiler() is None:
        pytest.skip("no C compiler")
    peak.build(kernel, tmp_path)                        # compiling needs no CPU support
    if not has_flags(*kernel.flags):
        pytest.skip(f"the CPU lacks {' '.join(kernel.flags)}")
    m = peak.measure_kernel(kernel, tmp_path, seconds=PEAK_S, repeats=1)
    assert math.isfinite(m["gops"]) and m["gops"] > 0 and m["threads"] >= 1


def test_peak_kernel_chains_stay_independent():
    """The generated C keeps every accumulator (the compiler would otherwise merge identical chains)."""
    src = peak.source(peak.KERNELS[0])
    accs = peak.KERNELS[0].accumulators
    assert src.count('__asm__("" : "+v"') == accs and src.count("memcpy(") == accs


def test_peak_measure_names_every_precision():
    peaks = peak.measure(PEAK_S)
    assert set(peaks) == set(peak.PRECISIONS)
    for p, v in peaks.items():
        assert ("gops" in v and v["gops"] > 0) or v["skipped"], p
    assert peak.peak_of("fp16", peaks)[0] == ("fp16" if "gops" in peaks["fp16"] else "fp32")
    assert "Measured peak" in peak.summary(peaks)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "mini.onnx"
    model = mini_unet(c=8, h=16, w=16)
    onnx.save(model, path)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    return path, model, x


def test_openvino_fp32_matches_onnxruntime(tiny):
    pytest.importorskip("openvino", reason=openvino.MISSING)
    path, model, x = tiny
    engine, chosen = openvino.ov_engine(path, x, threads=2, precision="f32")
    assert chosen == "f32"
    for ov, ref in zip(engine(), ort_run(model, x), strict=True):
        np.testing.assert_allclose(ov, ref, atol=1e-4)
    default, chosen = openvino.ov_engine(path, x, threads=2)
    assert chosen in openvino.PRECISIONS
    for ov, ref in zip(default(), ort_run(model, x), strict=True):   # bf16 on CPUs with it: looser
        np.testing.assert_allclose(ov, ref, atol=0.05)


@pytest.fixture(scope="module")
def tiny_fp32(tiny, tmp_path_factory):
    from test_runtime import build
    path, model, _ = tiny
    t = time.perf_counter()
    prefix = build(tmp_path_factory.mktemp("build"), model, "mini")
    return prefix, time.perf_counter() - t


@pytest.mark.parametrize("with_openvino", [True, False])
def test_compile_report_renders(with_openvino, tiny, tiny_fp32, monkeypatch):
    from deploy.bench import compile as bench_compile
    if with_openvino:
        pytest.importorskip("openvino", reason=openvino.MISSING)
    else:
        monkeypatch.setattr(openvino, "available", lambda: False)
    path, _, x = tiny
    prefix, compile_s = tiny_fp32
    peaks = peak.measure(PEAK_S)
    b = bench_compile.measure_batch(path, {"fp32": prefix}, x, runs=3, gop=0.01, peaks=peaks)
    assert ("ov_fp32" in b["median_ms"]) == with_openvino
    assert set(b["speedup"]["tvm_fp32"]) == ({"ort_fp32", "ov_fp32"} if with_openvino else {"ort_fp32"})
    assert b["checks"]["tvm_fp32"]["mask_agreement"] > 0.99
    result = {"machine": report.machine(), "threads": 2, "runs": 3, "peak": peaks,
              "models": [{"model": "mini", "compile_s": {"fp32": compile_s}, "batches": [b]}]}
    md = bench_compile.markdown(result)
    assert "TVM fp32 ×OV" in md and "Measured peak" in md and "% of fp32" in md
    assert (openvino.MISSING in md) != with_openvino
    if with_openvino:
        assert f"OV default ({b['precisions']['ov_default']})" in md


@pytest.mark.parametrize("with_openvino", [True, False])
def test_int8_report_renders(with_openvino, tmp_path, monkeypatch):
    """A small net built int8 through compile_build; OpenVINO (when there) runs its mod.qdq.onnx."""
    from deploy.bench import int8 as bench_int8
    from deploy.config import load_build_config
    from deploy.data.synth import synth_dsb2018
    from test_int8 import small_net, write_build
    if not has_flags("avx512_vnni"):
        pytest.skip("this CPU has no AVX-512 VNNI: int8 builds are refused here")
    if with_openvino:
        pytest.importorskip("openvino", reason=openvino.MISSING)
    else:
        monkeypatch.setattr(openvino, "available", lambda: False)
    images = synth_dsb2018(tmp_path / "data", n=8, size=64) / "images"
    cfg = load_build_config(write_build(tmp_path / "net", small_net(), images, "net"))
    entry, paths = bench_int8.build_suite(cfg, tmp_path / "net" / "net.onnx", tmp_path)
    peaks = peak.measure(PEAK_S)
    b = bench_int8.measure_batch(paths, bench_int8.images(cfg, 2), 3, entry["conv_gop_per_image"], peaks)
    assert ("ov_int8" in b["checks"]) == with_openvino
    assert b["checks"]["tvm_int8"]["vs_qdq_mask_agreement"] > 0.9
    if with_openvino:
        assert b["checks"]["ov_int8"]["vs_qdq_mask_agreement"] > 0.9
    result = {"machine": report.machine(), "threads": 2, "runs": 3, "peak": peaks, "calibrate_compile_target_s": 60,
              "models": [{"model": "net", **entry, "batches": [b]}]}
    md = bench_int8.markdown(result)
    assert "TVM int8 vs OV int8" in md and "% of int8" in md and "net (" in md
    assert (openvino.MISSING in md) != with_openvino


def test_openvino_is_imported_only_by_the_bench():
    """OpenVINO is a baseline, never a dependency of compiling or running."""
    root = Path(__file__).resolve().parents[1] / "deploy"
    users = {p.relative_to(root).as_posix() for p in root.rglob("*.py")
             if any(line.strip().startswith(("import openvino", "from openvino")) for line in p.read_text().splitlines())}
    assert users == {"bench/openvino.py"}
