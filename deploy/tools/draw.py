"""Pictures for people: mask PNGs, overlays (prediction blended on the source image with the
contours of GT and prediction), volume montages. OpenCV only (plots are matplotlib's: plots.py)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

GT_COLOR = (0, 255, 0)      # RGB: green contour = ground truth
PRED_COLOR = (255, 40, 40)  # RGB: red contour = prediction


def palette(num_classes: int) -> np.ndarray:
    """(K, 3) uint8 RGB colours; class 1 of a binary model is red, the rest the VOC palette."""
    pal = np.zeros((max(num_classes, 2), 3), np.uint8)
    for k in range(len(pal)):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[k] = (r, g, b)
    pal[1] = (255, 0, 0)
    return pal


def mask_image(labels: np.ndarray, binary: bool) -> np.ndarray:
    """What a mask PNG holds: 0/255 for a binary model, class indices otherwise."""
    return (labels.astype(np.uint8) * 255) if binary else labels.astype(np.uint8)


def _contour(canvas: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(min(canvas.shape[:2]) / 256))
    cv2.drawContours(canvas, contours, -1, color, thickness)


def overlay(image_rgb: np.ndarray, pred_labels: np.ndarray, gt_fg: np.ndarray | None = None,
            alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) RGB: predicted classes blended on the image, contours of GT (green) and prediction (red).

    `pred_labels` and `gt_fg` (foreground, bool or labels) must already be at the image's size.
    """
    img = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    labels = np.asarray(pred_labels)
    if labels.shape != img.shape[:2]:
        raise ValueError(f"prediction {labels.shape} and image {img.shape[:2]} differ in size")
    pal = palette(int(labels.max()) + 1)
    fg = labels > 0
    out = img.copy()
    if fg.any():
        blend = (1 - alpha) * img[fg].astype(np.float32) + alpha * pal[labels[fg]].astype(np.float32)
        out[fg] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    if gt_fg is not None:
        _contour(out, np.asarray(gt_fg) > 0, GT_COLOR)
    _contour(out, fg, PRED_COLOR)
    return out


def fit_text(text: str, width: int, scale: float, smallest: float = 0.35) -> tuple[str, float]:
    """(text, font scale) that fits `width` pixels: the scale shrinks down to `smallest`, then the
    middle of the text gives way to an ellipsis (a run folder's name is often the long part)."""
    font = cv2.FONT_HERSHEY_SIMPLEX

    def wide(t: str, sc: float) -> int:
        return cv2.getTextSize(t, font, sc, 1)[0][0]

    while scale > smallest and wide(text, scale) > width:
        scale = round(scale - 0.05, 2)
    keep = len(text)
    short = text
    while keep > 3 and wide(short, scale) > width:
        keep -= 1
        short = text[:keep // 2] + "..." + text[len(text) - (keep - keep // 2):]
    return short, scale


def montage(tiles: Sequence[np.ndarray], captions: Sequence[str], title: str, cols: int = 3,
            tile: int = 256) -> np.ndarray:
    """(H, W, 3) RGB: `tiles` (RGB images) scaled to fit `tile` pixels, in rows of `cols`, each with its
    caption above it, under a title line (a volume's slices side by side: deploy eval's volumes/)."""
    font, dark, pad, line = cv2.FONT_HERSHEY_SIMPLEX, (40, 40, 40), 6, 18
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    width = cols * (tile + pad) + pad
    img = np.full((line + 10 + rows * (tile + line + pad) + pad, width, 3), 255, np.uint8)
    text, scale = fit_text(title, width - 2 * pad, 0.55)
    cv2.putText(img, text, (pad, line), font, scale, dark, 1, cv2.LINE_AA)
    for i, (t, caption) in enumerate(zip(tiles, captions)):
        h, w = t.shape[:2]
        f = tile / max(h, w)
        t = cv2.resize(t, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_NEAREST)
        x = pad + (i % cols) * (tile + pad)
        y = line + 10 + (i // cols) * (tile + line + pad)
        text, scale = fit_text(caption, tile, 0.45)
        cv2.putText(img, text, (x, y + 13), font, scale, dark, 1, cv2.LINE_AA)
        img[y + line:y + line + t.shape[0], x:x + t.shape[1]] = t
    return img
