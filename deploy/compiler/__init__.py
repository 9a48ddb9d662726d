"""Compiler: build YAML + ONNX → compiled model suite (`<workspace>/<name>/mod.so|json`, compile.log).

Public API: `compile_build(cfg, *, dtype=None, target=None, recalibrate=False) -> Path` (the prefix).
Submodules: onnx_import (check/import; loading: deploy.frontend), ops_scan (supported operators), target (TVM targets,
this host as one), artifact (suite layout, preprocessing spec, staged folder swap), quantized
(int8 inputs), int8 (QDQ → integer convs), backend/ (target-specific optimisation), cli.
Importing this package is cheap; TVM is imported when a compile starts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["compile_build"]

if TYPE_CHECKING:
    from deploy.compiler.compile import compile_build


def __getattr__(name: str):
    if name == "compile_build":
        from deploy.compiler.compile import compile_build
        return compile_build
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
