"""What a CPU target offers the kernels: LLVM features of its mcpu/mattr and the SIMD width.
(This host as a target is deploy.compiler.target.host_target.)"""
from __future__ import annotations

import tvm
from tvm.target import codegen

def has_features(target: tvm.target.Target, *features: str) -> bool:
    """True when the target's mcpu/mattr provide every LLVM feature named (e.g. "avx512fp16")."""
    return bool(codegen.target_has_features(list(features), target))


def vector_bits(target: tvm.target.Target) -> int:
    """Widest SIMD register the target has (512 / 256 / 128)."""
    if has_features(target, "avx512f"):
        return 512
    return 256 if has_features(target, "avx2") else 128
