"""`python -m deploy.bench --only ray`: the Ray route's rows of the `stream` part alone (deploy.bench.stream):
`deploy run --ray` on a local Ray instance with 1 and 2 workers, each run paired with a local runstream run
just before it, on UNet++ fp32 at batch 8. Their ratio is the per-image cost of going through Ray on one
machine (bar: >= 90 % with 1 worker); the rows say nothing of a real cluster's network."""
from __future__ import annotations

from pathlib import Path

from deploy.bench import report, stream


def run(work: Path, batches=(8,), runs: int = 20) -> dict:
    prefix, vdsp, data, images = stream.inputs(work, runs)
    return {"machine": report.machine(), "ray": stream.ray_rows(work, prefix, vdsp, data, max(batches), images)}


def markdown(result: dict) -> str:
    m = result["machine"]
    return f"# Ray route benchmark\n\n{m['cpu']}, {m['cores']} cores.\n\n" + stream._ray_markdown(result["ray"])
