"""Host CPU target detection (JSON-dict targets only; never "native", which TVM maps to generic)."""
from __future__ import annotations

import os

import tvm
from tvm.target import codegen

from deploy.errors import UnsupportedError


def host_cpu_name() -> str:
    """LLVM's name for this machine's CPU (e.g. "znver4", "sapphirerapids"), validated."""
    name = str(tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")())
    probe = tvm.target.Target({"kind": "llvm"})
    if name in ("", "generic", "native") or name not in codegen.llvm_get_cpu_archlist(probe):
        raise UnsupportedError(f"LLVM does not know this host CPU ({name!r}); pass an explicit target")
    return name


def host_target(num_cores: int | None = None) -> tvm.target.Target:
    """`llvm` target for this host: detected mcpu, `num-cores` = num_cores or the usable cores."""
    cores = num_cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    return tvm.target.Target({"kind": "llvm", "mcpu": host_cpu_name(), "num-cores": int(cores)})


def has_features(target: tvm.target.Target, *features: str) -> bool:
    """True when the target's mcpu/mattr provide every LLVM feature named (e.g. "avx512fp16")."""
    return bool(codegen.target_has_features(list(features), target))


def vector_bits(target: tvm.target.Target) -> int:
    """Widest SIMD register the target has (512 / 256 / 128)."""
    if has_features(target, "avx512f"):
        return 512
    return 256 if has_features(target, "avx2") else 128
