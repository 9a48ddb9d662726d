"""End-to-end numbers of one model on the analysis images: the mean IoU ×100 against the masks (the
rule `deploy run` and `deploy eval` score with, deploy.data.metrics.score_image) where images have
masks, and the prediction output's SQNR and cosine against fp32 (deploy.analysis.errors)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from deploy.analysis.errors import Errors
from deploy.analysis.samples import Samples
from deploy.data.metrics import predict, score_image


@dataclass
class EndToEnd:
    output: Errors = field(default_factory=Errors)  # the prediction output against fp32
    ious: list[float] = field(default_factory=list)  # per image with a mask

    @property
    def miou(self) -> float | None:
        """Mean IoU ×100 over the images with masks (None without any)."""
        return 100.0 * math.fsum(self.ious) / len(self.ious) if self.ious else None

    def add(self, samples: Samples, start: int, out: np.ndarray, ref: np.ndarray) -> None:
        """One batch: `out` and the fp32 `ref` (real rows only) of images start, start+1, ..."""
        self.output.add(out, ref)
        for k in range(out.shape[0]):
            pred = predict(out[k])
            gt = samples.gt(start + k, binary=pred.prob is not None)
            if gt is not None:
                self.ious.append(score_image(pred, gt)[0])

    def to_dict(self) -> dict:
        return {"miou": self.miou, "images_scored": len(self.ious), "output": self.output.to_dict()}
