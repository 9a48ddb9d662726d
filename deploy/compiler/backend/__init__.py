"""Compiler backends, one per TVM target kind (as TVM's own relax/backend/<target>/): what runs
after the ONNX import and around tvm.compile.

`cpu` (llvm targets) is the fast TVM CPU path (NHWC layout, packed-weight conv kernels, hand
schedules); `cuda` is TVM's stock GPU path. `backend_for(target)` picks one; each offers the compile
driver (deploy.compiler.compile) the same hooks, so the driver never asks which target it builds for:

    PIPELINE, DEVICE                              what mod.json's "pipeline" and "device" record
    optimize(mod, target, dtype, log=...)         Relax passes after the import (and int8 rewrite)
    relax_pipeline()                              tvm.compile's relax_pipeline argument
    verify(prefix, target, ex, log, runs_here)    check the exported library; mod.json's device_code
                                                  (or None); runs_here: this machine can run its code

A backend imports TVM when it is first picked (deploy.compiler.compile imports TVM before).
"""
from __future__ import annotations

from types import ModuleType

from deploy.errors import UnsupportedError


def backend_for(target) -> ModuleType:
    """The backend module for a tvm.target.Target (its kind: llvm or cuda)."""
    kind = target.kind.name
    if kind == "llvm":
        from deploy.compiler.backend import cpu
        return cpu
    if kind == "cuda":
        from deploy.compiler.backend import cuda
        return cuda
    raise UnsupportedError(f"no compiler backend for target kind {kind!r} (llvm and cuda have one)")
