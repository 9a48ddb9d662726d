"""Importing torchvision and segmentation-models-pytorch beside the CPU build of torch 2.13.

torchvision 0.28.0 from PyPI carries a `_C.so` built for CUDA torch; it cannot load beside the CPU
wheel, which torchvision tolerates (its `extension._has_ops()` turns False) except in
`_meta_registrations`, which registers fake kernels for `torchvision::nms` and `qnms` without
checking and fails with "operator torchvision::nms does not exist". Defining the two schemas (no
kernels) lets that module finish; a call of either op still fails in torchvision with its own error.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

from deploy.errors import DeployError

EXTRA = "pip install 'segdeploy[zoo-public]'"
MISSING_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                   "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
_schemas = []  # the torch.library.Library that holds them must stay alive


def torchvision() -> ModuleType:
    """`import torchvision`, working around the CUDA-built `_C.so` as the module docstring says."""
    try:
        return _import("torchvision")
    except RuntimeError as e:
        if "torchvision::nms does not exist" not in str(e):
            raise
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]
    import torch
    lib = torch.library.Library("torchvision", "DEF")
    for schema in MISSING_SCHEMAS:
        lib.define(schema)
    _schemas.append(lib)
    return _import("torchvision")


def smp() -> ModuleType:
    """`import segmentation_models_pytorch` (it imports torchvision first, through timm)."""
    torchvision()
    return _import("segmentation_models_pytorch")


def available() -> bool:
    try:
        smp()
    except DeployError:
        return False
    return True


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise DeployError(f"the public model zoo needs {name}: {EXTRA} ({e})") from e
