"""UNET-ZOO per-image metric (the vendor's "MIoU" column), in numpy.

Per image: the GT (grayscale, 0..255) is resized bilinearly (cv2) to the prediction's size and
binarised `>= 125`; the prediction (probabilities) is binarised `>= 0.5`;
IoU = Σpg / Σ(p+g−pg), Dice = 2Σpg / (Σp+Σg). When GT and prediction are both empty the
vendor code divides 0 by 0 (NaN); here that case scores 1 (a perfect empty prediction).
"""
from __future__ import annotations

import cv2
import numpy as np

GT_THRESHOLD = 125
PRED_THRESHOLD = 0.5


def binarize(prob: np.ndarray, gt_gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, g) boolean arrays at the prediction's (H, W); `prob` may carry leading 1-dims."""
    prob = np.asarray(prob, dtype=np.float32)
    prob = prob.reshape(prob.shape[-2:])
    h, w = prob.shape
    gt = np.asarray(gt_gray)
    if gt.shape != (h, w):
        gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_LINEAR)
    return prob >= PRED_THRESHOLD, gt >= GT_THRESHOLD


def iou(prob: np.ndarray, gt_gray: np.ndarray) -> float:
    p, g = binarize(prob, gt_gray)
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def dice(prob: np.ndarray, gt_gray: np.ndarray) -> float:
    p, g = binarize(prob, gt_gray)
    total = np.count_nonzero(p) + np.count_nonzero(g)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(p & g) / total
