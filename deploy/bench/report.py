"""Benchmark reports: one JSON for machines and one Markdown table for people, written atomically."""
from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path


def machine() -> dict:
    import onnxruntime
    from deploy.bench.timing import cores
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": cores(), "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}


def write(report_dir: Path, stem: str, data: dict, markdown: str) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = report_dir / f"{stem}.json", report_dir / f"{stem}.md"
    for path, text in zip(paths, (json.dumps(data, indent=2) + "\n", markdown)):
        fd, tmp = tempfile.mkstemp(dir=report_dir, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return paths


def table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
