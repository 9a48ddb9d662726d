"""The CUDA backend: TVM's stock inference passes, tvm.compile's default GPU pipeline, and a
test-compile of the kernels with nvcc (the library carries them as CUDA C source).

No hand kernels here: the Relax module is decomposed for inference (BatchNorm), constants are
folded, fp16 models run ToMixedPrecision, and tvm.compile's "default" pipeline schedules for the GPU.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import tvm
from tvm import relax

from deploy.errors import DeployError

PIPELINE = "tvm-default"   # what mod.json's "pipeline" records
DEVICE = "cuda"            # mod.json "device": what the runtime opens


def optimize(mod: tvm.IRModule, target: tvm.target.Target, dtype: str,
             log: Callable[[str], None] = lambda msg: None) -> tvm.IRModule:
    """The stock passes, under the target; the rest is tvm.compile's default pipeline."""
    seq = [relax.transform.DecomposeOpsForInference(), relax.transform.FoldConstant()]
    if dtype == "fp16":
        seq.append(relax.transform.ToMixedPrecision(out_dtype="float16"))
    with target:
        mod = tvm.transform.Sequential(seq)(mod)
    log(f"optimize: stock passes {[p.info.name for p in seq]}, then tvm.compile's default pipeline")
    return mod


def relax_pipeline() -> str:
    """tvm.compile's relax_pipeline: its default (GPU scheduling included)."""
    return "default"


def verify(prefix: Path, target: tvm.target.Target, ex, log: Callable[[str], None], runs_here: bool) -> dict:
    """CUDA libraries carry the kernels as CUDA C source that TVM compiles when the library is
    loaded on a GPU (NVRTC or nvcc). Here: compile them once with nvcc to catch errors now (the
    library is never run here: `prefix` and `runs_here` are unused). Returns mod.json's device_code."""
    info = {"format": "cuda-source",
            "loaded_with": "tvm_callback_cuda_compile at load: NVRTC (pip install cuda-bindings) or nvcc "
                           "(TVM_CUDA_COMPILE_MODE=nvcc)",
            "checked_with": None}
    srcs = []

    def walk(m):
        if m.kind == "cuda":
            srcs.append(m.inspect_source("cuda"))
        for sub in m.imports_:
            walk(sub)
    walk(ex.mod)
    nvcc = shutil.which("nvcc")  # what tvm.support.nvcc runs
    if not srcs:
        log("verify: no CUDA kernels found in the library")
        return info
    if nvcc is None:
        msg = ("verify: CUDA kernels NOT test-compiled: nvcc not found (install the CUDA toolkit, or check on the GPU "
               "machine); the library carries CUDA source and compiles it when loaded there")
        log(msg)
        print(msg.replace("verify: ", "warning: "), file=sys.stderr)
        return info
    from tvm.support import nvcc as tvm_nvcc
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1:]
    t0 = time.perf_counter()
    with target:
        for src in srcs:
            try:
                tvm_nvcc.compile_cuda(src, target_format="fatbin", compiler="nvcc")
            except Exception as e:
                raise DeployError(f"CUDA kernels failed to compile with nvcc for {target.attrs['arch']}: {e}") from e
    info["checked_with"] = f"nvcc ({version[0] if version else nvcc}) for {target.attrs['arch']}"
    log(f"verify: CUDA kernels compiled with nvcc in {time.perf_counter() - t0:.2f}s")
    return info
