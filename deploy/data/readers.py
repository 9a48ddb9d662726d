"""Folder layouts of the vendor's datasets and calibration sampling.

Layouts `pair_masks` recognises (one rule per folder pair, chosen by how many images it pairs):
- same name          DSB2018      `images/<id>.png`  ↔ `masks/<id>.png`
- `<stem>_matte.*`   portrait     `images/<n>.png`   ↔ `masks/<n>_matte.png`
- `<stem>_mask.*`    Carvana      `imgs/<id>.jpg`    ↔ `masks/<id>_mask.gif`
- same stem, other extension      `<id>.jpg`         ↔ `<id>.png`
or an explicit `mask_suffix` (`"_mask.gif"`, `".png"`, `"_matte"` ...). Every listing is sorted by
file name, so results never depend on the file system's order.
"""
from __future__ import annotations

import os
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.data.image import IMAGE_EXTS, read_gt, read_image_rgb
from deploy.errors import DeployError


class DataWarning(UserWarning):
    """Something about a dataset worth knowing that does not stop the run (missing masks, few files)."""


@dataclass(frozen=True)
class Sample:
    """An image file and its mask file. `rgb()` and `gt()` are what a run reads of any sample (a CT
    slice read straight from its volume, deploy.tools.volumes, answers the same two)."""
    image: Path
    mask: Path | None

    def rgb(self) -> np.ndarray:
        return read_image_rgb(self.image)

    def gt(self, binary: bool) -> np.ndarray:
        return read_gt(self.mask, binary)


def _dir(folder: str | os.PathLike, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise DeployError(f"{what} {folder} is not a directory")
    return folder


def _suffix_pattern(suffix: str) -> str:
    """'png' / '.png' → '.png'; anything with an underscore or a dot inside ('_matte.png') is used as is."""
    s = suffix.lower()
    return s if s.startswith((".", "_")) or "." in s else "." + s


def list_images(folder: str | os.PathLike, suffix: str | None = None,
                skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """Files directly in `folder` with an image extension (or ending with `suffix`), sorted by name.

    Left out, counted in one DataWarning (and appended to `skipped` as (path, reason)): hidden files
    (a leading dot: editor and macOS `._*` files), names holding a control character (a newline
    would split the path over two lines of a datalist or results.csv) and names that are not UTF-8."""
    folder = _dir(folder, "image folder")
    if suffix:
        pattern = _suffix_pattern(suffix)
        keep = lambda name: name.lower().endswith(pattern)  # noqa: E731
    else:
        keep = lambda name: name.lower().endswith(IMAGE_EXTS)  # noqa: E731
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if keep(e.name) and e.is_file())
    left_out = [(folder / n, _unlistable(n)) for n in names if _unlistable(n)]
    if left_out:
        counts = Counter(reason for _, reason in left_out)
        warnings.warn(f"{folder}: {len(left_out)} file(s) skipped: "
                      f"{', '.join(f'{n} {reason}' for reason, n in counts.items())}, e.g. "
                      f"{left_out[0][0].name!r}; rename them to include them", DataWarning, stacklevel=2)
        if skipped is not None:
            skipped += [(str(p), f"{str(p)!r}: skipped, {reason}") for p, reason in left_out]
    return [folder / n for n in names if not _unlistable(n)]


def no_images(folder: str | os.PathLike, suffix: str | None = None, what: str = "images") -> DeployError:
    """The error for a folder with nothing to work on, saying which file names were looked for (a run
    over no images would otherwise end with exit 0 and an empty report)."""
    looked = repr(_suffix_pattern(suffix)) if suffix else ", ".join(IMAGE_EXTS)
    return DeployError(f"no {what} (file names ending with {looked}; hidden files left out) in {folder}; "
                       "check the folder" + (" and the suffix" if suffix else ""))


def _unlistable(name: str) -> str | None:
    """Why a file name is left out of a listing (it could not be written on one line of a datalist or
    results.csv, or at all as UTF-8), or None."""
    if name.startswith("."):
        return "hidden (name starts with '.')"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "with control characters in the name"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogates
        return "whose name is not valid UTF-8"
    return None


_MASK_TAGS = ("_matte", "_mask")
# auto rule → the tag between an image's stem and its mask's extension (None: same file name)
_AUTO_RULES = {"same name": None, "<stem>_matte.*": "_matte", "<stem>_mask.*": "_mask", "same stem": ""}


def _rule_candidates(image: Path, rule: str) -> list[str]:
    """Mask file names (lower case) an image may pair with under one auto rule."""
    tag = _AUTO_RULES[rule]
    if tag is None:
        return [image.name.lower()]
    return [image.stem.lower() + tag + ext for ext in IMAGE_EXTS]


def pair_masks(image_dir: str | os.PathLike, mask_dir: str | os.PathLike | None,
               mask_suffix: str | None = None) -> list[Sample]:
    """Pair each image with its mask; the layout is detected unless `mask_suffix` is given.

    An image without a mask is kept with `mask=None` and counted in one DataWarning; a mask folder
    in which no image finds a mask is a DeployError (wrong folder or suffix). With `mask_dir=None`
    every sample has `mask=None`. Masks and images may share a folder (`<n>.png` + `<n>_matte.png`).
    """
    image_dir = _dir(image_dir, "image folder")
    if mask_dir is None:
        images = list_images(image_dir)
        if not images:
            raise no_images(image_dir)
        return [Sample(p, None) for p in images]
    mask_dir = _dir(mask_dir, "mask folder")
    same_dir = image_dir.resolve() == mask_dir.resolve()
    images = list_images(image_dir)
    masks = {p.name.lower(): p for p in list_images(mask_dir)}
    tail = _suffix_pattern(mask_suffix) if mask_suffix else None
    if same_dir:  # the mask files are not images to segment
        images = [p for p in images if not p.stem.lower().endswith(_MASK_TAGS)
                  and not (tail and (p.name.lower().endswith(tail) or p.stem.lower().endswith(tail)))]
    if not images:
        raise no_images(image_dir)

    if tail:
        rule = f"<stem>{tail}" if tail.endswith(IMAGE_EXTS) else f"<stem>{tail}.*"
        exts = ("",) if tail.endswith(IMAGE_EXTS) else IMAGE_EXTS
        find = lambda p: [p.stem.lower() + tail + e for e in exts]  # noqa: E731
    else:
        rules = [r for r in _AUTO_RULES if not (same_dir and r in ("same name", "same stem"))]
        hits = {r: sum(any(c in masks for c in _rule_candidates(p, r)) for p in images) for r in rules}
        rule = max(rules, key=lambda r: hits[r])  # first rule wins ties
        find = lambda p: _rule_candidates(p, rule)  # noqa: E731

    samples = []
    for p in images:
        mask = next((masks[c] for c in find(p) if c in masks), None)
        samples.append(Sample(p, mask))
    missing = [s.image for s in samples if s.mask is None]
    if len(missing) == len(samples):
        tried = rule if tail else ", ".join(_AUTO_RULES)
        raise DeployError(f"no image in {image_dir} has a mask in {mask_dir} (mask names tried: {tried}; "
                          "pass the mask suffix, e.g. '_mask.gif', if the layout differs)")
    if missing:
        warnings.warn(f"{len(missing)} of {len(samples)} images in {image_dir} have no mask in {mask_dir} "
                      f"(rule {rule}), e.g. {missing[0].name}; they are kept with mask=None",
                      DataWarning, stacklevel=2)
    return samples


def select_calibration(folder: str | os.PathLike, suffix: str | None, num: int, seed: int = 0) -> list[Path]:
    """`num` files of `folder` ending with `suffix`: a seeded choice from the sorted listing, returned sorted.

    Fewer files than `num` → all of them, with a DataWarning; none → DeployError naming folder and suffix.
    """
    if num < 1:
        raise DeployError(f"calibration image count must be at least 1, got {num}")
    files = list_images(folder, suffix)
    if not files:
        raise no_images(folder, suffix, "calibration images")
    if len(files) <= num:
        if len(files) < num:
            warnings.warn(f"calibration asked for {num} images but {folder} has only {len(files)} "
                          f"matching {suffix!r}; using all {len(files)}", DataWarning, stacklevel=2)
        return files
    idx = np.random.default_rng(seed).choice(len(files), size=num, replace=False)
    return sorted(files[i] for i in idx)
