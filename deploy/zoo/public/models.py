"""The public networks of catalogue.PUBLIC as their libraries build them, random weights (seeded)."""
from __future__ import annotations

import torch

from deploy.catalogue import PublicModel, public
from deploy.zoo.public import libraries


class MainOutput(torch.nn.Module):
    """torchvision's segmentation models return {"out": ..., ["aux": ...]}; the prediction is "out"."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def create(name: str, seed: int = 0) -> torch.nn.Module:
    """The network `name` in eval mode, initialised from `seed`, returning one tensor (N, classes, H, W)."""
    row = public(name)
    torch.manual_seed(seed)
    return _build(row).eval()


def _build(row: PublicModel) -> torch.nn.Module:
    if row.library == "torchvision":
        segmentation = libraries.torchvision().models.segmentation
        ctor = getattr(segmentation, row.arch)
        return MainOutput(ctor(weights=None, weights_backbone=None, num_classes=row.classes, aux_loss=False))
    ctor = getattr(libraries.smp(), row.arch)
    return ctor(encoder_name=row.encoder, encoder_weights=None, classes=row.classes)
