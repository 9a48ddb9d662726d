"""Benchmark reports: one JSON for machines and one Markdown table for people, written atomically."""
from __future__ import annotations

import platform
from pathlib import Path

from deploy.host import describe, usable_cores
from deploy.io import atomic_write_json, atomic_write_text


def machine() -> dict:
    """What the numbers were measured on, as detected (deploy.host.describe), never assumed."""
    import onnxruntime
    return {"cpu": describe(), "cores": usable_cores(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__}


def write(report_dir: Path, stem: str, data: dict, markdown: str) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = report_dir / f"{stem}.json", report_dir / f"{stem}.md"
    atomic_write_json(paths[0], data)
    atomic_write_text(paths[1], markdown)
    return paths
