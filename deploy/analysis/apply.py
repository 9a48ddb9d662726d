"""`--apply`: the search's convs written into the build YAML's skip list (`backend.quantize.skip_nodes`,
legacy `engine.calibration.skip_nodes`), each as an escaped regular expression that matches only
its own name, after the skip_nodes already there.

By default into a copy in the analysis folder, set to int8 and to the name of the suite the
analysis described, with its relative paths (checkpoint, dataset, workspace) rewritten for its new
folder, so `deploy compile COPY` builds that suite with those convs in fp32. `--in-place` rewrites
the build YAML itself (only the skip list changes). Either is written atomically; the YAML is
written by PyYAML, so comments of the original are not kept.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from deploy.config.build import BuildConfig
from deploy.errors import DeployError
from deploy.io import atomic_write_text, read_text

# schema → (dtype section, quantize section, name section, name key; path keys per section)
_KEYS = {"current": (("backend",), ("backend", "quantize"), ("name",),
                     {("frontend",): "checkpoint", ("dataset",): "path", ("workspace",): "path"}),
         "legacy": (("engine",), ("engine", "calibration"), ("model", "name"),
                    {("model",): "checkpoint", ("dataset",): "path", ("workspace",): "work_dir"})}


def _section(doc: dict, keys: tuple[str, ...]) -> dict:
    for k in keys:
        if not isinstance(doc.get(k), dict):
            doc[k] = {}
        doc = doc[k]
    return doc


def skip_patterns(nodes: list[str] | tuple[str, ...]) -> list[str]:
    """Regular expressions matching exactly these node names (skip_nodes are full-match patterns)."""
    return [re.escape(n) for n in nodes]


def _paths(cfg: BuildConfig) -> dict[tuple[str, ...], Path]:
    p = _KEYS[cfg.schema][3]
    values = [cfg.frontend.checkpoint, cfg.dataset.path, cfg.workspace]
    return {sec: v for sec, v in zip(p, values) if v is not None}


def updated(cfg: BuildConfig, nodes: list[str] | tuple[str, ...], folder: Path | None) -> str:
    """The build YAML's text with `nodes` added to its skip list; `folder`: the copy's folder (its
    relative paths rebased there, dtype int8, the analysed suite's name), None: in place."""
    doc = yaml.safe_load(read_text(cfg.source, "build file")) or {}
    dtype_sec, quant_sec, name_keys, path_keys = _KEYS[cfg.schema]
    q = _section(doc, quant_sec)
    old = list(q.get("skip_nodes") or [])
    q["skip_nodes"] = old + [p for p in skip_patterns(nodes) if p not in old]
    if folder is not None:
        _section(doc, dtype_sec)["dtype"] = "int8"
        _section(doc, name_keys[:-1])[name_keys[-1]] = cfg.name
        for sec, path in _paths(cfg).items():
            _section(doc, sec)[path_keys[sec]] = os.path.relpath(path, folder)
    return yaml.safe_dump(doc, sort_keys=False)


def apply(cfg: BuildConfig, nodes: list[str] | tuple[str, ...], folder: Path, in_place: bool = False) -> Path:
    """Write the skip list (see the module doc); returns the YAML written."""
    if in_place:
        return atomic_write_text(cfg.source, updated(cfg, nodes, None))
    path = Path(folder) / cfg.source.name
    if path.resolve() == cfg.source.resolve():
        raise DeployError(f"{path}: the analysis folder holds the build YAML itself; use --in-place")
    return atomic_write_text(path, updated(cfg, nodes, Path(folder).resolve()))
