"""`analyze(cfg, ...)`: the int8 plan of a build measured on images — per conv (deploy.analysis.layers),
end to end, and optionally the smallest fp32 skip list within a budget (deploy.analysis.search).

The graph is the compiler's (deploy.compiler.compile.load_checked: loaded, prepared, checked) and
the plan is deploy.quantize.plan's with the calibration of the analysis folder, which starts as a
copy of the suite's calibration.json when the suite has one: the numbers describe the module that
`deploy compile` builds from the same YAML. The analysis folder (default `<suite>.analysis` beside
the suite) is never a suite: only `deploy compile` writes into those."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from deploy.analysis import layers as L
from deploy.analysis import samples as S
from deploy.analysis.apply import skip_patterns
from deploy.analysis.report import FORMAT
from deploy.analysis.search import Budget, SearchResult, search
from deploy.config.build import BuildConfig
from deploy.errors import DeployError
from deploy.quantize import QuantPlan, plan
from deploy.quantize.cache import CACHE_FILE


def default_folder(cfg: BuildConfig) -> Path:
    """`<suite>.analysis` beside the suite folder (`<workspace>/<name>.analysis`)."""
    from deploy.runtime.suite import analysis_dir
    return analysis_dir(cfg.artifact_dir)


def refuse_suite(folder: Path, flag: str, suite: Path) -> None:
    """`folder` must not be a compiled suite (the build's own, or any folder with a `<prefix>.so` +
    `<prefix>.json` pair): only `deploy compile` writes there."""
    folder = Path(folder).resolve()
    if folder == suite.resolve() or any(j.with_suffix(".so").is_file() for j in folder.glob("*.json")):
        raise DeployError(f"{flag} {folder}: a compiled model suite; `deploy analyze` never writes into one "
                          "(choose another folder)")


def _seed_cache(suite_cache: Path, report_cache: Path) -> None:
    """Start the analysis from the suite's calibration (read only), when the folder has none yet."""
    if suite_cache.is_file() and not report_cache.exists():
        report_cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(suite_cache, report_cache)


def load_plan(cfg: BuildConfig, folder: Path, recalibrate: bool = False,
              progress: bool = True) -> tuple[onnx.ModelProto, QuantPlan]:
    """(the prepared graph a compile builds, its int8 plan calibrated into `folder`)."""
    from deploy.compiler.compile import load_checked

    model = load_checked(cfg).model
    _seed_cache(cfg.artifact_dir / CACHE_FILE, Path(folder) / CACHE_FILE)
    return model, plan(cfg, model, Path(folder), recalibrate=recalibrate, progress=progress)


@dataclass
class Analysis:
    cfg: BuildConfig
    plan: QuantPlan
    samples: S.Samples
    measured: L.Measured
    worst: dict[str, list[str]]
    search: SearchResult | None = None
    applied_yaml: Path | None = None

    @property
    def miou_drop(self) -> float | None:
        m = self.measured
        return None if m.fp32.miou is None else m.fp32.miou - m.int8.miou

    def to_dict(self) -> dict:
        """analysis.json (deploy.analysis.report)."""
        s, m = self.samples, self.measured
        search = None
        if self.search is not None:
            search = {**self.search.to_dict(m.fp32), "skip_patterns": skip_patterns(self.search.kept)}
        return {
            "format": FORMAT, "name": self.cfg.name, "build_yaml": str(self.cfg.source),
            "suite": str(self.cfg.artifact_dir),
            "images": {"source": s.source,
                       "folder": str(s.image_dir), "count": len(s.images), "masks": s.mask_dir and str(s.mask_dir),
                       "scored": s.scored},
            "plan": {"calibrate_mode": self.plan.calibrate_mode, "calibration_images": self.plan.num_images,
                     "quantized": len(self.plan.convs), "skipped": dict(self.plan.skipped)},
            "end_to_end": {"output": m.output, "fp32": m.fp32.to_dict(), "int8": m.int8.to_dict(),
                           "miou_drop": self.miou_drop},
            "layers": [{**x.to_dict(), "flags": [k for k, names in self.worst.items() if x.node in names]}
                       for x in m.layers],
            "worst": self.worst, "search": search,
            "applied_yaml": self.applied_yaml and str(self.applied_yaml),
        }


def analyze(cfg: BuildConfig, model: onnx.ModelProto, p: QuantPlan, *, images: str | Path | None = None,
            masks: str | Path | None = None, budget: Budget | None = None, worst: int = 3,
            progress: bool = True) -> Analysis:
    """Measure plan `p` of `model` (load_plan) on the calibration images or `images`; with a
    budget, search the skip list."""
    samples = S.select(cfg, model, p.images, images, masks)
    if budget is not None:
        budget.check(samples)  # before the long pass
    measured = L.measure(model, p, samples, progress)
    a = Analysis(cfg, p, samples, measured, L.worst(measured.layers, worst))
    if budget is not None:
        a.search = search(model, p, samples, measured, L.sensitivity_order(measured.layers), budget, progress)
    return a
