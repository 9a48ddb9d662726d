"""Segmentation metrics: the one implementation every tool scores with.

UNET-ZOO per-image metric (the vendor's "MIoU" column), as in UNET-ZOO's `get_iou`/`get_dice`:
- the GT is read as grayscale (0..255) and resized to the prediction's (model) size with cv2
  bilinear interpolation, then binarised `g = gt >= 125` (UNET-ZOO: `< 125 → 0, else 1`);
- the prediction (a probability map) is binarised `p = prob >= threshold`, threshold 0.5
  (UNET-ZOO: `< 0.5 → 0, else 1`);
- IoU = Σpg / Σ(p+g−pg), Dice = 2Σpg / (Σp+Σg).
When GT and prediction are both empty the vendor code divides 0 by 0 (NaN); here that case
scores IoU = Dice = 1 (a perfect empty prediction), and the tools say so in their summary.

Confusion-matrix metrics (other UNet sources), accumulated over all pixels of all images:
overall pixel accuracy, mean class accuracy, frequency-weighted IoU ("FreqW Acc") and mean IoU
over classes; GT pixels equal to `ignore_index` (VOC's 255) are left out.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GT_THRESHOLD = 125
PRED_THRESHOLD = 0.5
EMPTY_NOTE = "an image whose GT and prediction are both empty scores IoU = Dice = 1 (the vendor code gives NaN)"


@dataclass(frozen=True)
class Prediction:
    """One image's prediction at model size: `labels` (H, W) uint8 class map (0/1 for a binary
    model) and, for a single-channel model, `prob` (H, W) float32; `classes`: the output's channels
    (2 for a single-channel model: background and foreground)."""
    labels: np.ndarray
    prob: np.ndarray | None
    threshold: float = PRED_THRESHOLD
    classes: int = 2

    def labels_at(self, size: tuple[int, int]) -> np.ndarray:
        """The class map resized back to `size` = (H, W): the probability bilinearly, then
        thresholded (binary); the class map with nearest neighbour (multi-class)."""
        h, w = size
        if self.labels.shape == (h, w):
            return self.labels
        if self.prob is not None:
            prob = cv2.resize(self.prob, (w, h), interpolation=cv2.INTER_LINEAR)
            return (prob >= self.threshold).astype(np.uint8)
        return cv2.resize(self.labels, (w, h), interpolation=cv2.INTER_NEAREST)


def predict(output: np.ndarray, threshold: float = PRED_THRESHOLD, sigmoid: bool = False) -> Prediction:
    """One image's model output → Prediction. `output` is (C, H, W), (H, W) or with leading 1-dims.

    C == 1: a probability map (the zoo nets end with a sigmoid; `sigmoid=True` applies one to logits),
    binarised `>= threshold`. C > 1: class scores, argmax over C.
    """
    out = np.asarray(output, dtype=np.float32)
    while out.ndim > 3 and out.shape[0] == 1:
        out = out[0]
    if out.ndim == 2:
        out = out[None]
    if out.ndim != 3:
        raise ValueError(f"expected a (C, H, W) segmentation output, got shape {np.shape(output)}")
    if out.shape[0] == 1:
        prob = out[0]
        if sigmoid:
            prob = 1.0 / (1.0 + np.exp(-prob))
        return Prediction((prob >= threshold).astype(np.uint8), prob, threshold)
    return Prediction(np.argmax(out, axis=0).astype(np.uint8), None, classes=out.shape[0])


def binarize_gt(gt_gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """GT (H0, W0) 0..255 → bool (H, W): cv2 bilinear resize to `size` = (H, W), then `>= 125`."""
    return _gt_at(gt_gray, size, cv2.INTER_LINEAR) >= GT_THRESHOLD


def label_gt(gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class-index GT (values 0..K-1, 255 = ignore) → (H, W) at `size` with nearest resize."""
    return _gt_at(gt, size, cv2.INTER_NEAREST)


def _gt_at(gt: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    """A single-channel GT at (H, W) = size (first channel of a 3-channel file)."""
    gt = np.asarray(gt)
    if gt.ndim == 3:
        gt = gt[..., 0]
    h, w = size
    return gt if gt.shape == (h, w) else cv2.resize(gt, (w, h), interpolation=interp)


def iou_dice(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Binary masks (same shape, nonzero = foreground) → (IoU, Dice); both empty → (1.0, 1.0)."""
    p, g = np.asarray(pred) != 0, np.asarray(gt) != 0
    inter = int(np.count_nonzero(p & g))
    sp, sg = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    union = sp + sg - inter
    if union == 0:
        return 1.0, 1.0
    return inter / union, 2.0 * inter / (sp + sg)


def unetzoo_scores(prob: np.ndarray, gt_gray: np.ndarray, threshold: float = PRED_THRESHOLD) -> tuple[float, float]:
    """The UNET-ZOO (IoU, Dice) of one probability map (H, W) against its grayscale GT (any size)."""
    prob = np.asarray(prob, dtype=np.float32)
    prob = prob.reshape(prob.shape[-2:])
    return iou_dice(prob >= threshold, binarize_gt(gt_gray, prob.shape))


def class_mean(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int = 255) -> tuple[float, float]:
    """Per-image mean IoU and Dice over the classes present in this image's GT or prediction."""
    keep = gt != ignore
    ious, dices = [], []
    for k in range(num_classes):
        p, g = (pred == k) & keep, (gt == k) & keep
        if p.any() or g.any():
            i, d = iou_dice(p, g)
            ious.append(i)
            dices.append(d)
    return (float(np.mean(ious)), float(np.mean(dices))) if ious else (1.0, 1.0)


def score_image(pred: Prediction, gt: np.ndarray, num_classes: int | None = None) -> tuple[float, float, np.ndarray]:
    """(IoU, Dice, GT at model size) of one image — the rule `deploy run` and `deploy eval` share, so
    both routes agree: a binary model against the UNET-ZOO binarised grayscale GT; a multi-class one
    (argmax) by `class_mean` over `num_classes` (default: the output's channels) against a
    class-index GT (`read_label_map`), resized nearest."""
    gt_model = gt_at(gt, pred.labels.shape, pred.prob is not None)
    if pred.prob is not None:
        return (*iou_dice(pred.labels, gt_model), gt_model)
    return (*class_mean(pred.labels, gt_model, num_classes or pred.classes), gt_model)


def gt_at(gt: np.ndarray, size: tuple[int, int], binary: bool) -> np.ndarray:
    """The GT as a prediction of `size` is scored against: 0/1 (UNET-ZOO binarised) for a binary
    model, class ids (nearest resize) for a multi-class one."""
    return binarize_gt(gt, size).astype(np.uint8) if binary else label_gt(gt, size)


class ConfusionMatrix:
    """Pixel confusion matrix accumulated over images: rows = GT class, columns = predicted class."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        if num_classes < 2:
            raise ValueError(f"a confusion matrix needs at least 2 classes, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        p = np.asarray(pred).astype(np.int64).ravel()
        g = np.asarray(gt).astype(np.int64).ravel()
        if p.shape != g.shape:
            raise ValueError(f"prediction and GT differ in size: {np.shape(pred)} vs {np.shape(gt)}")
        keep = (g >= 0) & (g < self.num_classes)
        if self.ignore_index is not None:
            keep &= g != self.ignore_index
        p = np.clip(p[keep], 0, self.num_classes - 1)
        k = self.num_classes
        self.matrix += np.bincount(k * g[keep] + p, minlength=k * k).reshape(k, k)

    def scores(self) -> dict:
        """overall_acc, mean_acc, freqw_acc, mean_iou (over classes present in GT or prediction), class_iou."""
        h = self.matrix.astype(np.float64)
        total = h.sum()
        diag = np.diag(h)
        gt_count, pred_count = h.sum(axis=1), h.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc_cls = diag / gt_count
            iou = diag / (gt_count + pred_count - diag)
        freq = gt_count / total if total else gt_count
        present = freq > 0
        return {
            "overall_acc": float(diag.sum() / total) if total else float("nan"),
            "mean_acc": float(np.nanmean(acc_cls)) if np.any(gt_count > 0) else float("nan"),
            "freqw_acc": float((freq[present] * iou[present]).sum()),
            "mean_iou": float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan"),
            "class_iou": [None if np.isnan(v) else float(v) for v in iou],
        }
