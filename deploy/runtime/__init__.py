"""Runtime: load a compiled model suite by its prefix and run it (numpy in, numpy out).

`import deploy.runtime` imports nothing heavy; TVM (without torch) is imported when a Model is
first created. The suite's files and description schema: deploy.runtime.suite.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Model", "TensorInfo", "ArtifactError", "read_meta", "artifact_paths", "SCHEMA_VERSION"]

if TYPE_CHECKING:
    from deploy.runtime.model import Model, TensorInfo
    from deploy.runtime.suite import SCHEMA_VERSION, ArtifactError, artifact_paths, read_meta


def __getattr__(name: str):
    if name in ("Model", "TensorInfo"):
        from deploy.runtime import model
        return getattr(model, name)
    if name in __all__:
        from deploy.runtime import suite
        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
