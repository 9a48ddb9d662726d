"""`--max-drop X` / `--min-sqnr DB`: the smallest set of convs to keep in fp32 for the int8 model to
stay within a budget, each candidate measured end to end.

Greedy in the order of the isolated sensitivities (lowest isolated SQNR first): the set grows one
conv at a time until the int8 model meets the budget, then every conv of it but the last added is
tried out again, least sensitive first, and left out when the budget still holds without it. Every
step is one run of the images through the candidate's QDQ model (deploy.analysis.graphs.quantized),
scored against the fp32 outputs of the first pass. Keeping every conv in fp32 is the fp32 model, so
a budget of a drop >= 0 is always met at the latest there.

The drop is in mIoU points (×100) against the masks; without masks the budget is an SQNR floor of
the prediction output.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from deploy.analysis import graphs
from deploy.analysis.errors import finite
from deploy.analysis.layers import Measured
from deploy.analysis.samples import Samples
from deploy.analysis.score import EndToEnd
from deploy.errors import DeployError
from deploy.quantize.planner import QuantPlan


@dataclass(frozen=True)
class Budget:
    max_drop: float | None = None   # mIoU points
    min_sqnr: float | None = None   # dB of the prediction output

    def __post_init__(self):
        if (self.max_drop is None) == (self.min_sqnr is None):
            raise DeployError("give one budget: --max-drop (mIoU points) or --min-sqnr (dB)")

    def check(self, samples: Samples) -> None:
        if self.max_drop is not None and not samples.scored:
            raise DeployError(f"--max-drop needs ground-truth masks for the images in {samples.image_dir} (none "
                              "found: pass --masks DIR), or use --min-sqnr DB to bound the output's SQNR instead")

    def met(self, fp32: EndToEnd, e: EndToEnd) -> bool:
        if self.max_drop is not None:
            return fp32.miou - e.miou <= self.max_drop
        return e.output.sqnr >= self.min_sqnr

    def describe(self) -> str:
        if self.max_drop is not None:
            return f"mIoU drop <= {self.max_drop:g} points"
        return f"output SQNR >= {self.min_sqnr:g} dB"


@dataclass(frozen=True)
class Step:
    kept: tuple[str, ...]   # convs in fp32
    result: EndToEnd
    met: bool

    def to_dict(self, fp32: EndToEnd) -> dict:
        drop = None if self.result.miou is None else fp32.miou - self.result.miou
        return {"kept_fp32": list(self.kept), "miou": self.result.miou, "miou_drop": drop,
                "output_sqnr_db": finite(self.result.output.sqnr), "output_cosine": self.result.output.cosine,
                "met": self.met}


@dataclass
class SearchResult:
    budget: Budget
    order: list[str]
    steps: list[Step] = field(default_factory=list)
    kept: tuple[str, ...] = ()

    @property
    def final(self) -> Step:
        return next(s for s in reversed(self.steps) if s.kept == self.kept)

    def to_dict(self, fp32: EndToEnd) -> dict:
        return {"budget": {"max_drop": self.budget.max_drop, "min_sqnr": self.budget.min_sqnr,
                           "text": self.budget.describe()},
                "order": self.order, "skip_nodes": list(self.kept), "result": self.final.to_dict(fp32),
                "steps": [s.to_dict(fp32) for s in self.steps]}


def greedy(order: list[str], evaluate: Callable[[tuple[str, ...]], EndToEnd], fp32: EndToEnd,
           budget: Budget) -> SearchResult:
    """The search itself, over any `evaluate(kept) -> EndToEnd` (see the module doc)."""
    res = SearchResult(budget, list(order))

    def trial(kept: tuple[str, ...]) -> bool:
        e = evaluate(kept)
        res.steps.append(Step(kept, e, budget.met(fp32, e)))
        return res.steps[-1].met

    kept: tuple[str, ...] = ()
    ok = trial(kept)
    for name in order:
        if ok:
            break
        kept += (name,)
        ok = trial(kept)
    for name in reversed(kept[:-1]):
        fewer = tuple(n for n in kept if n != name)
        if trial(fewer):
            kept = fewer
    res.kept = kept
    return res


def evaluator(model, plan: QuantPlan, samples: Samples, measured: Measured,
              progress: bool = True) -> Callable[[tuple[str, ...]], EndToEnd]:
    """`evaluate(kept)`: the int8 model with `kept` in fp32, scored on the images against fp32 (each
    set once: the plain int8 model's numbers come from the first pass)."""
    done: dict[frozenset, EndToEnd] = {frozenset(): measured.int8}

    def evaluate(kept: tuple[str, ...]) -> EndToEnd:
        if frozenset(kept) not in done:
            done[frozenset(kept)] = _run(kept)
        return done[frozenset(kept)]

    def _run(kept: tuple[str, ...]) -> EndToEnd:
        sess = graphs.session(graphs.quantized(model, plan, kept, expose=False), "int8 (QDQ) candidate")
        e = EndToEnd()
        desc = f"search: {len(kept)} conv(s) in fp32"
        with tqdm(total=len(samples.images), desc=desc, unit="img", disable=not progress, leave=False,
                  file=sys.stderr) as bar:
            for (x, n, start), ref in zip(samples.batches(), measured.reference):
                out = sess.run([measured.output], {samples.input_name: x})[0][:n]
                e.add(samples, start, np.asarray(out), ref)
                bar.update(n)
        return e
    return evaluate


def search(model, plan: QuantPlan, samples: Samples, measured: Measured, order: list[str], budget: Budget,
           progress: bool = True) -> SearchResult:
    """The greedy search on these images (budget checked against what the images allow first)."""
    budget.check(samples)
    return greedy(order, evaluator(model, plan, samples, measured, progress), measured.fp32, budget)
