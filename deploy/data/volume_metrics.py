"""Volume metrics as LiTS reports them, from 2-D slices grouped by the volume in their names.

A CT model is scored slice by slice (the UNET-ZOO per-image numbers), but LiTS ranks by volume:
- Dice per case: each volume's Dice = 2|P∩G| / (|P|+|G|) over all its voxels, averaged over volumes;
- global Dice: one Dice over the voxels of all volumes pooled (large livers weigh more).
Both for the liver (LiTS scores label ≥ 1, liver with its tumours) and the tumour (label 2). A
binary (single-foreground) model predicts the liver only; its GT foreground is the liver mask.
A volume whose GT and prediction of a structure are both empty scores Dice 1 for it (as
deploy.data.metrics scores an empty image). Voxels are counted at the size the slices are scored
at (the model's). Slices are grouped by `deploy.data.ct_slices.parse_slice_name`
(`volume-3_slice-042.png` → volume-3); names that do not follow it are left out.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from deploy.data.ct_slices import parse_slice_name

LIVER, TUMOUR = "liver", "tumour"
IGNORE = 255


@dataclass
class Overlap:
    """Voxel counts of one structure: intersection, prediction, GT."""
    inter: int = 0
    pred: int = 0
    gt: int = 0

    def add(self, p: np.ndarray, g: np.ndarray) -> None:
        self.inter += int(np.count_nonzero(p & g))
        self.pred += int(np.count_nonzero(p))
        self.gt += int(np.count_nonzero(g))

    def __iadd__(self, other: Overlap) -> Overlap:
        self.inter, self.pred, self.gt = self.inter + other.inter, self.pred + other.pred, self.gt + other.gt
        return self

    @property
    def dice(self) -> float:
        total = self.pred + self.gt
        return 2.0 * self.inter / total if total else 1.0


def structures(pred: np.ndarray, gt: np.ndarray, binary: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{structure: (predicted mask, GT mask)} of one slice. `binary`: 0/1 prediction and GT (liver);
    else class ids 0/1/2, GT 255 ignored."""
    if binary:
        return {LIVER: (pred != 0, gt != 0)}
    keep = gt != IGNORE
    return {LIVER: (((pred == 1) | (pred == 2)) & keep, ((gt == 1) | (gt == 2)) & keep),
            TUMOUR: ((pred == 2) & keep, (gt == 2) & keep)}


def slice_overlaps(pred: np.ndarray, gt: np.ndarray, binary: bool) -> dict[str, Overlap]:
    """{structure: Overlap} of one slice (what a run keeps per slice, a few integers, instead of its masks)."""
    out = {}
    for key, (p, g) in structures(np.asarray(pred), np.asarray(gt), binary).items():
        out[key] = Overlap()
        out[key].add(p, g)
    return out


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class VolumeScores:
    """Accumulates slice overlaps per volume; `summary()` gives per-case and global Dice."""

    def __init__(self) -> None:
        self.cases: dict[str, dict[str, Overlap]] = {}
        self.slices = 0

    def update(self, name: str, pred: np.ndarray, gt: np.ndarray, binary: bool) -> bool:
        """Add one scored slice; False (and nothing added) when `name` is not a slice name."""
        return parse_slice_name(name) is not None and self.add(name, slice_overlaps(pred, gt, binary))

    def add(self, name: str, overlaps: dict[str, Overlap]) -> bool:
        """Add one slice's `slice_overlaps`; False (and nothing added) when `name` is not a slice name."""
        parsed = parse_slice_name(name)
        if parsed is None:
            return False
        case = self.cases.setdefault(parsed[0], {})
        for key, o in overlaps.items():
            total = case.setdefault(key, Overlap())
            total += o
        self.slices += 1
        return True

    def summary(self) -> dict | None:
        """{"volumes", "slices", "per_case": {s: mean Dice}, "global": {s: Dice}, "cases": {volume: {s: Dice}}};
        None before any slice."""
        if not self.cases:
            return None
        names = sorted(self.cases, key=_natural)
        keys = [k for k in (LIVER, TUMOUR) if any(k in c for c in self.cases.values())]
        pooled = {k: Overlap() for k in keys}
        for case in self.cases.values():
            for k, o in case.items():
                pooled[k] += o
        return {
            "volumes": len(names), "slices": self.slices,
            "per_case": {k: math.fsum(self.cases[n][k].dice for n in names) / len(names) for k in keys},
            "global": {k: pooled[k].dice for k in keys},
            "cases": {n: {k: self.cases[n][k].dice for k in keys} for n in names},
        }


def volumes_csv(summary: dict) -> str:
    """volumes.csv of a `VolumeScores.summary()`: one line per volume (its Dice per structure), then the
    Dice per case (mean over volumes) and the global Dice (all voxels pooled), full precision."""
    keys = list(summary["per_case"])
    lines = [",".join(["volume", *(f"{k}_dice" for k in keys)])]
    lines += [",".join([n, *(repr(d[k]) for k in keys)]) for n, d in summary["cases"].items()]
    lines += [",".join([label, *(repr(summary[part][k]) for k in keys)])
              for label, part in (("per_case_mean", "per_case"), ("global", "global"))]
    return "\n".join(lines) + "\n"


def volume_lines(summary: dict) -> list[str]:
    """The console lines of a `VolumeScores.summary()` (×100, like the per-slice numbers)."""
    head = f"({summary['volumes']} volumes, {summary['slices']} slices)"
    return [f"{k.capitalize()} Dice per case: {summary['per_case'][k] * 100:.3f}, "
            f"global Dice: {summary['global'][k] * 100:.3f} {head}" for k in summary["per_case"]]
