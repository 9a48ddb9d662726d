"""Seeded synthetic datasets in the vendor's exact layouts (the real sets cannot be downloaded here).

- `synth_dsb2018`: `<out>/dsb2018_256_val/images/<id>.png` (RGB) and `masks/<id>.png` (0/255, same
  name), `<id>` 64 hex digits like the real DSB2018 ids. Fluorescence-like images (dark background,
  bright nuclei, mostly gray) and stained brightfield-like ones (light background, purple or dark
  nuclei) with varied nucleus sizes, irregular elliptical shapes, touching clusters, faint nuclei
  that are in the mask, out-of-focus blobs and specks that are not, blur, noise and uneven light.
- `synth_portrait`: `<out>/testing/images/<n>.png` and `masks/<n>_matte.png` (soft 0..255 mattes):
  a head-and-shoulders silhouette in varied pose, scale and position with fuzzy hair edges over a
  cluttered, textured background that shares colours with the person in places.

Both are hard on purpose: a trained UNet++ should score roughly like on the real sets, not 0.99.
Image i comes from `default_rng([seed, i])`, so a set of n images is a prefix of a larger one and a
re-run with the same arguments writes identical bytes. Files are written atomically.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from deploy.data.image import write_png
from deploy.errors import DeployError

DSB_DIR = "dsb2018_256_val"
PORTRAIT_DIR = "testing"


# ----------------------------------------------------------------------------- common helpers
def _smooth(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std noise with features about `scale` pixels across (coarse noise upsampled)."""
    h, w = shape
    gh, gw = max(2, round(h / scale) + 2), max(2, round(w / scale) + 2)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma) if sigma > 0.05 else x


def _check_args(n: int, seed: int, size: int) -> None:
    if seed < 0:
        raise DeployError(f"synthetic set seed must be >= 0, got seed={seed}")
    if n < 1:
        raise DeployError(f"synthetic set size must be at least 1, got n={n}")
    if size < 32:
        raise DeployError(f"synthetic image size must be at least 32 pixels, got size={size}")


def _prepare(dirs: list[Path], planned: list[set[str]]) -> None:
    """Create the folders; refuse to mix this set with files it would not write (an older, larger set)."""
    for d, names in zip(dirs, planned):
        d.mkdir(parents=True, exist_ok=True)
        foreign = sorted(e.name for e in os.scandir(d) if not e.name.startswith(".") and e.name not in names)
        if foreign:
            raise DeployError(f"{d} already holds {len(foreign)} file(s) this set would not write "
                              f"(e.g. {foreign[0]}); remove the folder or choose another OUT")


def _generate(pairs: list[tuple[Path, Path]], make: Callable[[np.random.Generator, int], tuple],
              seed: int, size: int, progress: bool, desc: str) -> None:
    from tqdm import tqdm

    for i, (img_path, mask_path) in enumerate(tqdm(pairs, desc=desc, unit="img", disable=not progress)):
        image, mask = make(np.random.default_rng([seed, i]), size)
        write_png(img_path, image)
        write_png(mask_path, mask)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- DSB2018-like nuclei
def _nucleus_stamp(shape: tuple[int, int], cx: float, cy: float, a: float, b: float, ang: float,
                   amps: np.ndarray, phases: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Irregular ellipse: (bbox slices, normalised radius d) with d < 1 inside the outline."""
    h, w = shape
    reach = a * (1.0 + np.abs(amps).sum()) + 2.0
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    c, s = np.float32(np.cos(ang)), np.float32(np.sin(ang))
    u = (xs * c + ys * s) / np.float32(a)
    v = (ys * c - xs * s) / np.float32(b)
    outline = np.ones_like(u)
    if amps.any():
        theta = np.arctan2(v, u)
        for k, (amp, phase) in enumerate(zip(amps, phases), start=2):
            outline += amp * np.cos(k * theta + phase)
    return (slice(y0, y1), slice(x0, x1)), np.sqrt(u * u + v * v) / outline


def _nuclei_layout(rng: np.random.Generator, size: int):
    """Place nuclei: (mask bool, signal float32 in-focus intensity, oof float32 out-of-focus distractors, r0)."""
    shape = (size, size)
    scale = size / 256.0
    r0 = float(np.exp(rng.uniform(np.log(3.5), np.log(16.0)))) * scale
    target = rng.uniform(0.05, 0.32) * size * size
    p_cluster = rng.uniform(0.0, 0.75)
    centres = rng.uniform(0, size, (int(rng.integers(1, 6)), 2))
    spread = r0 * rng.uniform(1.5, 4.0)
    p_faint = rng.uniform(0.05, 0.3)
    ecc_lo = rng.uniform(0.45, 0.85)
    irregular = rng.uniform(0.02, 0.12)

    mask = np.zeros(shape, bool)
    signal = np.zeros(shape, np.float32)
    covered, placed = 0.0, 0
    for _ in range(1200):
        if covered >= target or placed >= 500:
            break
        if rng.random() < p_cluster:
            cx, cy = centres[rng.integers(len(centres))] + rng.normal(0, spread, 2)
        else:
            cx, cy = rng.uniform(0, size, 2)
        a = float(np.clip(r0 * np.exp(rng.normal(0, 0.28)), 1.8 * scale, 45 * scale))
        b = a * rng.uniform(ecc_lo, 1.0)
        amps = (rng.uniform(0, irregular, 4) / np.arange(1, 5) ** 0.5).astype(np.float32)
        stamp = _nucleus_stamp(shape, cx, cy, a, b, rng.uniform(0, np.pi), amps,
                               rng.uniform(0, 2 * np.pi, 4).astype(np.float32))
        if stamp is None:
            continue
        sl, d = stamp
        inside = d < 1.0
        area = inside.sum()
        if area < 3:
            continue
        if (mask[sl] & inside).sum() > 0.25 * area:  # allow touching and slight overlap, not stacking
            continue
        bright = rng.uniform(0.12, 0.4) if rng.random() < p_faint else float(np.exp(rng.normal(0, 0.22)))
        # dome profile with an anti-aliased rim (about one pixel wide)
        rim = np.clip((1.0 - d) * b + 0.5, 0.0, 1.0)
        profile = bright * (1.0 - 0.3 * np.minimum(d, 1.0) ** 2) * rim
        covered += (inside & ~mask[sl]).sum()
        mask[sl] |= inside
        np.maximum(signal[sl], profile.astype(np.float32), out=signal[sl])
        placed += 1

    # distractors, not in the mask: out-of-focus nuclei and small bright specks
    oof = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(0, 7))):
        a = r0 * rng.uniform(0.8, 1.6)
        stamp = _nucleus_stamp(shape, *rng.uniform(0, size, 2), a, a * rng.uniform(0.6, 1.0),
                               rng.uniform(0, np.pi), np.zeros(1, np.float32), np.zeros(1, np.float32))
        if stamp is not None:
            sl, d = stamp
            np.maximum(oof[sl], rng.uniform(0.15, 0.5) * (d < 1.0), out=oof[sl])
    oof = _blur(oof, rng.uniform(3.0, 6.0) * scale)
    specks = int(rng.integers(0, 25))
    if specks:
        ys, xs = rng.integers(0, size, (2, specks))
        oof[ys, xs] += rng.uniform(0.5, 3.0, specks).astype(np.float32)
        oof = np.maximum(oof, _blur(oof, 0.8))
    return mask, signal, oof, r0


def _render_fluorescence(rng, mask, signal, oof, r0, size):
    shape = signal.shape
    texture = 1.0 + rng.uniform(0.05, 0.35) * _smooth(rng, shape, max(1.5, r0 / 4))
    sig = _blur(signal * texture, rng.uniform(0.6, 2.0) * size / 256)
    illum = np.clip(1.0 + rng.uniform(0.1, 0.45) * _smooth(rng, shape, size / 3), 0.3, None)
    gain = rng.uniform(0.3, 0.95)
    bg = rng.uniform(0.0, 0.12) * np.clip(1.0 + 0.5 * _smooth(rng, shape, size / 4), 0, None)
    x = gain * (sig + oof) * illum + bg
    x += rng.uniform(0.005, 0.04) * rng.standard_normal(shape).astype(np.float32)
    x += rng.uniform(0.0, 0.06) * np.sqrt(np.maximum(x, 0)) * rng.standard_normal(shape).astype(np.float32)
    x = np.clip(x, 0, 1)
    if rng.random() < 0.7:
        tint = np.ones(3, np.float32)
    else:
        tint = rng.uniform(0.15, 1.0, 3).astype(np.float32)
        tint /= tint.max()
    return _to_u8(x[..., None] * tint)


_HEMATOXYLIN = np.array([0.65, 0.70, 0.29], np.float32)
_EOSIN = np.array([0.07, 0.99, 0.11], np.float32)


def _stain(rng, base):
    v = np.clip(base + rng.normal(0, 0.06, 3), 0.02, None).astype(np.float32)
    return v / np.linalg.norm(v)


def _render_brightfield(rng, mask, signal, oof, r0, size):
    shape = signal.shape
    gray = rng.random() < 0.3
    v_h = np.full(3, 3 ** -0.5, np.float32) if gray else _stain(rng, _HEMATOXYLIN)
    v_e = _stain(rng, _EOSIN)
    texture = 1.0 + rng.uniform(0.1, 0.4) * _smooth(rng, shape, max(1.5, r0 / 4))
    hema = _blur(signal * texture, rng.uniform(0.6, 2.0) * size / 256) * rng.uniform(0.6, 1.5)
    hema += rng.uniform(0.02, 0.12) * np.clip(1.0 + _smooth(rng, shape, size / 6), 0, None)  # background haze
    hema += 0.5 * oof
    # cytoplasm / stroma: around the nuclei and in smooth patches
    cells = _blur(mask.astype(np.float32), r0 * rng.uniform(1.0, 2.5))
    cells = np.clip(cells / (cells.max() + 1e-6) * 1.5, 0, 1)
    stroma = np.clip(0.5 + 0.6 * _smooth(rng, shape, size / rng.uniform(4, 12)), 0, 1)
    eos = rng.uniform(0.05, 0.2 if gray else 0.7) * np.maximum(cells, stroma)
    od = hema[..., None] * v_h + eos[..., None] * v_e
    white = rng.uniform(0.85, 1.0, 3).astype(np.float32)
    illum = np.clip(1.0 - rng.uniform(0.0, 0.25) * np.abs(_smooth(rng, shape, size / 2)), 0.5, 1)
    x = white * illum[..., None] * np.exp(-od)
    x += rng.uniform(0.004, 0.03) * rng.standard_normal(x.shape).astype(np.float32)
    return _to_u8(np.clip(x, 0, 1))


def _dsb_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    fluorescence = rng.random() < 0.6
    mask, signal, oof, r0 = _nuclei_layout(rng, size)
    render = _render_fluorescence if fluorescence else _render_brightfield
    return render(rng, mask, signal, oof, r0, size), mask.astype(np.uint8) * 255


def dsb2018_id(i: int) -> str:
    """File stem of synthetic image i: 64 hex digits like the real DSB2018 ids (independent of the seed)."""
    return hashlib.sha256(f"segdeploy-synth-dsb2018-{i}".encode()).hexdigest()


def synth_dsb2018(out_root: str | os.PathLike, n: int = 200, seed: int = 0, size: int = 256, *,
                  progress: bool = False) -> Path:
    """Write n nuclei images and 0/255 masks to `out_root/dsb2018_256_val/{images,masks}/<id>.png`.

    The folder name is the vendor's whatever `size` is. Returns `out_root/dsb2018_256_val`.
    """
    _check_args(n, seed, size)
    root = Path(out_root) / DSB_DIR
    names = [dsb2018_id(i) + ".png" for i in range(n)]
    img_dir, mask_dir = root / "images", root / "masks"
    _prepare([img_dir, mask_dir], [set(names), set(names)])
    _generate([(img_dir / nm, mask_dir / nm) for nm in names], _dsb_sample, seed, size, progress, "dsb2018")
    return root


# ----------------------------------------------------------------------------- portrait-like mattes
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _ellipse(canvas, cx, cy, ax, ay, angle, value=255):
    cv2.ellipse(canvas, _pt(cx, cy), _pt(ax, ay), float(angle), 0, 360, value, -1, cv2.LINE_AA, _SHIFT)


def _poly(canvas, pts, value=255):
    arr = np.array([_pt(x, y) for x, y in pts], np.int32)
    cv2.fillPoly(canvas, [arr], value, cv2.LINE_AA, shift=_SHIFT)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    px = np.array([[[h * 360.0, s, v]]], np.float32)  # float HSV: H in degrees, S and V in 0..1
    return cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0]


def _random_colour(rng) -> np.ndarray:
    return _hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.9), rng.uniform(0.1, 0.95))


def _pattern(rng, shape, colour, size) -> np.ndarray:
    """A (H, W, 3) surface of `colour`: plain, striped or mottled, with soft shading."""
    h, w = shape
    out = np.empty((h, w, 3), np.float32)
    out[:] = colour
    kind = rng.integers(3)
    if kind == 1:
        other = _random_colour(rng) if rng.random() < 0.6 else colour * rng.uniform(0.4, 0.8)
        period, ang = rng.uniform(4, 24) * size / 256, rng.uniform(0, np.pi)
        phase = (np.arange(w, dtype=np.float32)[None, :] * np.float32(np.cos(ang))
                 + np.arange(h, dtype=np.float32)[:, None] * np.float32(np.sin(ang))) * np.float32(2 * np.pi / period)
        stripes = _blur((np.sin(phase) > 0).astype(np.float32), 0.7)[..., None]
        out += (other.astype(np.float32) - out) * stripes
    elif kind == 2:
        out *= (1.0 + 0.2 * _smooth(rng, shape, rng.uniform(2, 10) * size / 256))[..., None]
    out *= (1.0 + 0.12 * _smooth(rng, shape, size / 5))[..., None]  # folds / shading
    return out


def _background(rng, size, near: list[np.ndarray], person: tuple[float, float, float]) -> np.ndarray:
    """Gradient plus clutter; some shapes take the person's colours and sit beside the shoulders."""
    shape = (size, size)
    c0, c1 = _random_colour(rng), _random_colour(rng)
    if rng.random() < 0.2:  # a wall the colour of the clothes: low contrast all along the torso
        c0 = np.clip(near[0] + rng.normal(0, 0.05, 3), 0, 1)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    t = np.clip(0.5 + ramp[None, :] * np.float32(np.cos(ang)) + ramp[:, None] * np.float32(np.sin(ang)),
                0, 1)[..., None]
    bg = (c0 * (1 - t) + c1 * t).astype(np.float32)
    for _ in range(int(rng.integers(3, 16))):  # clutter: furniture, frames, windows, posters ...
        layer = np.zeros(shape, np.uint8)
        cx, cy = rng.uniform(-0.1, 1.1, 2) * size
        if rng.random() < 0.35:  # camouflage: a colour the person also has, often right beside them
            colour = np.clip(near[rng.integers(len(near))] + rng.normal(0, 0.04, 3), 0, 1)
            if rng.random() < 0.6:
                hx, hy, r = person
                cx, cy = hx + rng.choice([-1, 1]) * rng.uniform(1.5, 4.5) * r, hy + rng.uniform(0.5, 4.0) * r
        else:
            colour = _random_colour(rng)
        ext = rng.uniform(0.05, 0.5, 2) * size
        if rng.random() < 0.5:
            a = rng.uniform(-0.3, 0.3)
            corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
            _poly(layer, [(cx + ext[0] * u * np.cos(a) - ext[1] * v * np.sin(a),
                           cy + ext[0] * u * np.sin(a) + ext[1] * v * np.cos(a)) for u, v in corners])
        else:
            _ellipse(layer, cx, cy, ext[0], ext[1], rng.uniform(0, 180))
        x, y, w, h = cv2.boundingRect(layer)
        surface = _pattern(rng, (max(h, 1), max(w, 1)), colour, size)  # drawn even when off-frame: same rng stream
        if w and h:
            alpha = (layer[y:y + h, x:x + w].astype(np.float32) / 255.0)[..., None]
            bg[y:y + h, x:x + w] += (surface - bg[y:y + h, x:x + w]) * alpha
    if rng.random() < 0.3:  # a smaller person further back: a hard negative, not in the matte
        fig = np.zeros(shape, np.uint8)
        r = person[2] * rng.uniform(0.3, 0.7)
        fx, fy = rng.uniform(0, size), rng.uniform(0.1, 0.7) * size
        _ellipse(fig, fx, fy, r, r * 1.25, rng.uniform(-15, 15))
        _ellipse(fig, fx, fy + r * 2.6, r * 2.4, r * 1.2, 0)
        _poly(fig, [(fx - r * 2.4, fy + r * 2.6), (fx + r * 2.4, fy + r * 2.6),
                    (fx + r * 2.5, size), (fx - r * 2.5, size)])
        alpha = (fig.astype(np.float32) / 255.0)[..., None]
        bg += (_pattern(rng, shape, _random_colour(rng), size) - bg) * alpha
    bg *= (1.0 + rng.uniform(0.02, 0.12) * _smooth(rng, shape, rng.uniform(1.5, 6)))[..., None]
    if rng.random() < 0.6:  # depth of field
        bg = _blur(bg, rng.uniform(0.5, 3.5) * size / 256)
    return bg


def _portrait_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    # geometry: uint8 layers on a padded canvas (so the tilt never uncovers the torso's bottom),
    # rotated into the output frame; all colour work happens at the output size
    pad = size // 4
    big = size + 2 * pad
    canvas = lambda: np.zeros((big, big), np.uint8)  # noqa: E731
    s = rng.uniform(0.7, 1.3) * size
    rx = 0.12 * s
    ry = rx * rng.uniform(1.15, 1.35)
    cx = pad + rng.uniform(0.3, 0.7) * size
    cy = pad + rng.uniform(0.2, 0.45) * size
    tilt = rng.uniform(-12, 12)
    head, clothes, hair, face, feat = canvas(), canvas(), canvas(), canvas(), canvas()
    _ellipse(head, cx, cy, rx, ry, tilt)
    # neck, rounded shoulders, torso down past the bottom edge, maybe an arm
    neck_w = rx * rng.uniform(0.45, 0.65)
    y_sh = cy + ry * rng.uniform(1.1, 1.45)
    bx = cx + rng.normal(0, 0.25) * rx
    sw = rx * rng.uniform(1.9, 3.2)
    sh_h = rx * rng.uniform(0.5, 1.1)
    neck = canvas()
    _poly(neck, [(cx - neck_w, cy), (cx + neck_w, cy),
                 (cx + neck_w * 1.1, y_sh + sh_h), (cx - neck_w * 1.1, y_sh + sh_h)])
    _ellipse(clothes, bx, y_sh + sh_h, sw, sh_h, rng.uniform(-6, 6))
    flare = rng.uniform(0.9, 1.15)
    _poly(clothes, [(bx - sw, y_sh + sh_h), (bx + sw, y_sh + sh_h), (bx + sw * flare, big), (bx - sw * flare, big)])
    if rng.random() < 0.35:
        side = rng.choice([-1.0, 1.0])
        _ellipse(clothes, bx + side * sw * 0.95, y_sh + sh_h + rx * 1.6, rx * rng.uniform(0.45, 0.7), rx * 2.2,
                 side * rng.uniform(0, 25))
    if rng.random() > 0.08:  # hair: a cap over the head, sometimes long down the sides
        _ellipse(hair, cx, cy - ry * rng.uniform(0.05, 0.25), rx * rng.uniform(1.02, 1.3), ry * rng.uniform(0.9, 1.1),
                 tilt + rng.uniform(-8, 8))
        if rng.random() < 0.4:
            _ellipse(hair, cx, cy + ry * 0.45, rx * rng.uniform(1.1, 1.45), ry * rng.uniform(1.0, 1.4), tilt)
    _ellipse(face, cx, cy + ry * 0.18, rx * 0.82, ry * 0.8, tilt)
    for sx in (-1, 1):
        _ellipse(feat, cx + sx * rx * 0.38, cy + ry * 0.05, rx * 0.13, ry * 0.06, tilt)
    _ellipse(feat, cx, cy + ry * 0.5, rx * 0.28, ry * 0.07, tilt)

    rot = cv2.getRotationMatrix2D((float(bx), float(y_sh)), float(rng.uniform(-12, 12)), 1.0)
    rot[:, 2] -= pad
    stack = cv2.warpAffine(np.dstack([head, neck, clothes, hair, face, feat]), rot, (size, size),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    head, neck, clothes, hair, face, feat = np.moveaxis(stack.astype(np.float32) / 255.0, -1, 0)
    hx, hy = rot @ np.array([cx, cy, 1.0])
    scale = size / 256

    # matte: soft body edge, fuzzy hair edge (streaky noise near the hair outline)
    body = np.maximum(np.maximum(head, neck), clothes)
    edge = _blur(body, rng.uniform(0.4, 1.2) * scale)
    hsoft = _blur(hair, rng.uniform(1.5, 3.5) * scale)
    k = int(rng.integers(3, 9))
    streaks = cv2.filter2D(rng.standard_normal((size, size)).astype(np.float32), -1,
                           np.ones((k, 1), np.float32) / np.sqrt(k))  # vertical strands
    fuzz = np.clip((hsoft - 0.5) * 2.5 + 0.5 + 1.4 * streaks * hsoft * (1 - hsoft), 0, 1)
    alpha = np.maximum(edge, fuzz)

    # colours: clothes, skin, hair, simple face features, directional light
    t = rng.uniform(0, 1)
    skin = np.array([0.96, 0.80, 0.69]) * (1 - t) + np.array([0.36, 0.22, 0.15]) * t + rng.normal(0, 0.03, 3)
    hair_col = np.clip(_HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.7, 1.2) + rng.normal(0, 0.03, 3), 0, 1)
    cloth_col = _random_colour(rng)
    fg = _pattern(rng, (size, size), cloth_col, size)
    skin_a = np.maximum(head, neck * (1 - clothes))[..., None]
    fg += (skin.astype(np.float32) * (1.0 + 0.05 * _smooth(rng, (size, size), 3))[..., None] - fg) * skin_a
    hair_a = np.clip(hair - 0.9 * face, 0, 1)[..., None]
    fg += (np.clip(hair_col.astype(np.float32) * (1.0 + 0.075 * streaks)[..., None], 0, 1) - fg) * hair_a
    fg *= 1 - 0.6 * (_blur(feat, 0.8) * face)[..., None]
    la = rng.uniform(0, 2 * np.pi)
    ramp = np.arange(size, dtype=np.float32)
    light = ((ramp[None, :] - hx) * np.float32(np.cos(la)) + (ramp[:, None] - hy) * np.float32(np.sin(la))) / (3 * rx)
    fg *= (1.0 + rng.uniform(0.05, 0.3) * np.clip(light, -1, 1))[..., None]

    bg = _background(rng, size, [cloth_col, hair_col, skin], (hx, hy, rx))
    a3 = alpha[..., None]
    img = fg * a3 + bg * (1 - a3)
    img = img * rng.uniform(0.8, 1.15) + rng.uniform(-0.06, 0.06)
    img = _blur(img.astype(np.float32), rng.uniform(0, 0.8) * scale)
    img += rng.uniform(0.004, 0.03) * rng.standard_normal(img.shape).astype(np.float32)
    return _to_u8(img), _to_u8(alpha)


_HAIR = np.array([[0.08, 0.06, 0.05], [0.35, 0.22, 0.12], [0.8, 0.68, 0.45], [0.6, 0.6, 0.6], [0.5, 0.2, 0.1]])


def synth_portrait(out_root: str | os.PathLike, n: int = 200, seed: int = 0, size: int = 256, *,
                   progress: bool = False) -> Path:
    """Write n portraits and soft mattes to `out_root/testing/images/<n>.png`, `masks/<n>_matte.png`.

    `<n>` is 1-based and zero-padded to 5 digits. Returns `out_root/testing`.
    """
    _check_args(n, seed, size)
    root = Path(out_root) / PORTRAIT_DIR
    stems = [f"{i + 1:05d}" for i in range(n)]
    img_dir, mask_dir = root / "images", root / "masks"
    _prepare([img_dir, mask_dir], [{s + ".png" for s in stems}, {s + "_matte.png" for s in stems}])
    _generate([(img_dir / f"{s}.png", mask_dir / f"{s}_matte.png") for s in stems], _portrait_sample,
              seed, size, progress, "portrait")
    return root
