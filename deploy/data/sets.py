"""The synthetic set each data family trains and is scored on, in its folder layout, made on first use.

One table (`LAYOUTS`) says where a family's images and masks live under a data root, so the zoo,
the demo and the accuracy bench find the same folders:

- dsb2018   `<root>/dsb2018_256_val/images`, `masks`        (deploy.data.synth)
- portrait  `<root>/testing/images`, `masks`                (deploy.data.synth)
- lits      `<root>/lits_liver/CT`, `seg` (liver = 255): axial slices that `deploy data slices
  --labels liver` exports from the LiTS-like volumes in `<root>/lits` (deploy.data.synth_ct)
- lits_classes  `<root>/lits_classes/CT`, `seg` (class ids 0/1/2): the same slices, `--labels classes`
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

LAYOUTS = {"dsb2018": ("dsb2018_256_val", "images", "masks"), "portrait": ("testing", "images", "masks"),
           "lits": ("lits_liver", "CT", "seg"), "lits_classes": ("lits_classes", "CT", "seg")}
LITS_LABELS = {"lits": "liver", "lits_classes": "classes"}
LITS_SLICES = 24  # axial slices per synthetic volume


@dataclass(frozen=True)
class SetDirs:
    root: Path
    images: Path
    masks: Path


def set_dirs(family: str, data_root: str | os.PathLike) -> SetDirs:
    folder, images, masks = LAYOUTS[family]
    root = Path(data_root) / folder
    return SetDirs(root, root / images, root / masks)


def synthetic_set(family: str, data_root: str | os.PathLike, n: int, seed: int, log=None) -> SetDirs:
    """The family's set under `data_root`, generated when its image folder is missing or empty:
    n images (lits: enough volumes for n slices)."""
    dirs = set_dirs(family, data_root)
    if dirs.images.is_dir() and any(dirs.images.iterdir()):
        return dirs
    if log:
        log(f"generating the synthetic {family} set in {dirs.root} ({n} images)")
    if family in LITS_LABELS:
        from deploy.data.ct_slices import export_slices
        from deploy.data.synth_ct import synth_lits

        volumes = synth_lits(Path(data_root) / "lits", n=math.ceil(n / LITS_SLICES), seed=seed, slices=LITS_SLICES)
        export_slices(volumes, dirs.root, labels=LITS_LABELS[family])
    else:
        from deploy.data.synth import synth_dsb2018, synth_portrait

        (synth_portrait if family == "portrait" else synth_dsb2018)(data_root, n=n, seed=seed)
    return dirs
