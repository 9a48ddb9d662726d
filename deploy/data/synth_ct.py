"""A seeded synthetic LiTS-like set: abdominal CT volumes in HU with liver/tumour labels, as NIfTI.

LiTS 2017 cannot be downloaded here, so this writes its file layout with made-up anatomy:
`<out>/volume-<i>.nii` (int16 HU) and `<out>/segmentation-<i>.nii` (uint8: 0 background, 1 liver,
2 tumour), stored LPS-like (x and y flipped in the array, negative affine diagonal) as many
scanners write them, so every reader has to reorient. Per axial slice, in HU:

- air outside the body about -1000; a body outline (irregular ellipse) with a subcutaneous fat
  rim about -100 and soft tissue / muscle 25..45 inside, mesenteric fat patches and bowel gas;
- the spine (vertebral body: cortical shell 700..1000, cancellous 250..400, canal, posterior arch),
  ribs along the body wall in the upper slices (500..900);
- the liver on the patient's right (about 60, a smooth irregular boundary, a left lobe towards the
  midline) with hepatic vessels inside (150..200, labelled liver, as in LiTS) and 0..3 hypodense
  tumours (about 30, label 2); aorta (160..200) and IVC beside the spine;
- look-alikes that are not liver: the spleen (about 50) on the left, kidneys with enhanced cortex;
- partial-volume blur and scanner noise (8..18 HU).

The in-plane spacing makes `size` voxels cover an abdomen (about 360 mm, so 2.8 mm at 128), the
slices are 5 mm apart. Volume i comes from `default_rng([seed, i])`, so n volumes are a prefix of
a larger set and a re-run writes identical bytes. Files are written atomically.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from deploy.data.nifti import write_nifti
from deploy.errors import DeployError

FOV_MM = 360.0
SLICE_MM = 5.0
_LITS_FILE = re.compile(r"^(volume|segmentation)-\d+\.nii(\.gz)?$")


def _smooth3(rng: np.random.Generator, shape: tuple[int, int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std 3-D noise with features about `scale` voxels across."""
    nx, ny, nz = shape
    gx, gy, gz = (max(2, round(s / scale) + 2) for s in shape)
    coarse = rng.standard_normal((gx, gy, gz)).astype(np.float32)
    plane = cv2.resize(coarse, (ny, nx), interpolation=cv2.INTER_CUBIC).reshape(nx * ny, gz)
    field = cv2.resize(plane, (nz, nx * ny), interpolation=cv2.INTER_LINEAR).reshape(nx, ny, nz)
    return (field - field.mean()) / (field.std() + 1e-6)


class _Grid:
    """World coordinates (mm, RAS+: +x the patient's right, +y anterior, +z superior) of every voxel."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float]):
        self.shape, self.spacing = shape, spacing
        axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
        self.x, self.y, self.z = np.meshgrid(*axes, indexing="ij", sparse=True)
        self.extent = tuple(n * s for n, s in zip(shape, spacing))

    def blob(self, rng: np.random.Generator, centre, radii, wobble: float) -> np.ndarray:
        """An ellipsoid whose surface is perturbed by smooth functions of the direction (bool)."""
        dx, dy, dz = ((c - np.float32(o)) / np.float32(r) for c, o, r in zip((self.x, self.y, self.z), centre, radii))
        d = np.sqrt(dx * dx + dy * dy + dz * dz) + np.float32(1e-6)
        outline = np.ones_like(d)
        for _ in range(5):
            w = rng.normal(0, 1.6, 3).astype(np.float32)
            outline += np.float32(rng.uniform(0.3, 1.0) * wobble) * np.cos(
                np.float32(np.pi) * (w[0] * dx + w[1] * dy + w[2] * dz) / d + np.float32(rng.uniform(0, 2 * np.pi)))
        return d < outline

    def disc(self, cx: float, cy: float, r: float) -> np.ndarray:
        """A cylinder along z (an axial disc in every slice)."""
        return (self.x - np.float32(cx)) ** 2 + (self.y - np.float32(cy)) ** 2 < np.float32(r * r)

    def tube(self, points: np.ndarray, r: float) -> np.ndarray:
        """Voxels within r mm of a polyline sampled densely enough (`points`: (N, 3) mm)."""
        out = np.zeros(self.shape, bool)
        for px, py, pz in points:
            out |= (self.x - px) ** 2 + (self.y - py) ** 2 + (self.z - pz) ** 2 < np.float32(r * r)
        return out


def _body(rng: np.random.Generator, g: _Grid):
    """(body, inner abdomen, body-outline radius rho/outline) of an irregular elliptic trunk."""
    a = 0.44 * g.extent[0] * rng.uniform(0.88, 1.0)
    b = a * rng.uniform(0.68, 0.8)
    tz = g.z / np.float32(g.extent[2])
    ax, by = np.float32(a) * (1 + np.float32(0.06) * tz), np.float32(b) * (1 + np.float32(0.04) * tz)
    cy = np.float32(rng.uniform(-0.04, 0.04) * b)
    theta = np.arctan2((g.y - cy) / by, g.x / ax)
    outline = np.ones(np.broadcast_shapes(theta.shape, tz.shape), np.float32)
    for k in range(2, 6):
        outline += np.float32(rng.uniform(0, 0.03)) * np.cos(k * theta + np.float32(rng.uniform(0, 2 * np.pi)))
    rho = np.sqrt((g.x / ax) ** 2 + ((g.y - cy) / by) ** 2) / outline
    fat = rng.uniform(0.06, 0.14)
    return rho < 1.0, rho < 1.0 - fat, rho, (a, b, fat)


def _ribs(rng: np.random.Generator, g: _Grid, rho: np.ndarray, fat: float) -> np.ndarray:
    """Rib cross-sections just inside the fat rim, in the upper part of the volume."""
    ribs = np.zeros(g.shape, bool)
    theta = np.arctan2(g.y, g.x)
    upper = g.z > np.float32(-0.2 * g.extent[2])
    for t0 in rng.uniform(0, 2 * np.pi, 12):
        if abs(np.sin(t0) - 1) < 0.06 or abs(np.sin(t0) + 1) < 0.15:  # not across the front or the spine
            continue
        width = np.float32(rng.uniform(0.05, 0.09))
        dt = np.angle(np.exp(1j * (theta - np.float32(t0) - np.float32(0.002) * g.z)))
        ring = np.abs(rho - np.float32(1 - fat - 0.03)) < np.float32(0.025)
        ribs |= ring & (np.abs(dt) < width) & upper
    return ribs


def _vessels(rng: np.random.Generator, g: _Grid, liver: np.ndarray) -> np.ndarray:
    """Hepatic vessels: a few curved tubes through the liver, kept inside it."""
    idx = np.argwhere(liver)
    out = np.zeros(g.shape, bool)
    if len(idx) == 0:
        return out
    sp = np.array(g.spacing, np.float32)
    half = (np.array(g.shape, np.float32) - 1) / 2
    for _ in range(int(rng.integers(4, 9))):
        start = (idx[rng.integers(len(idx))] - half) * sp
        direction = rng.normal(0, 1, 3)
        direction /= np.linalg.norm(direction)
        bend = rng.normal(0, 0.4, 3)
        t = np.linspace(0, rng.uniform(30, 70), 24)[:, None]
        points = start + t * direction + (t ** 2 / 60.0) * bend
        out |= g.tube(points.astype(np.float32), rng.uniform(2.5, 4.5))
    return out & liver


def _case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(HU int16, labels uint8, spacing) of one volume, in canonical (RAS+) array order."""
    sxy = FOV_MM / shape[0] * rng.uniform(0.92, 1.08)
    g = _Grid(shape, (sxy, sxy, SLICE_MM))
    body, inner, rho, (a, b, fat) = _body(rng, g)
    hu = np.full(shape, -1000.0, np.float32)
    soft = np.float32(rng.uniform(25, 45)) + np.float32(8) * _smooth3(rng, shape, 3)
    hu = np.where(body, np.float32(-100) + np.float32(15) * _smooth3(rng, shape, 4), hu)
    hu = np.where(inner, soft, hu)
    hu = np.where(inner & (_smooth3(rng, shape, 5) > 1.1), np.float32(-90), hu)  # mesenteric fat
    gas = inner & (g.y > np.float32(0.1 * b)) & (_smooth3(rng, shape, 3) > 2.4)
    hu = np.where(gas, np.float32(-850), hu)

    spine_y = -0.58 * b
    rv = rng.uniform(13, 18)
    vert = g.disc(0, spine_y, rv)
    canal_y = spine_y - rv - 7
    arch = g.disc(0, canal_y, 11) | (g.disc(0, canal_y - 14, 5) & inner)
    hu = np.where(arch, np.float32(rng.uniform(700, 950)), hu)
    hu = np.where(g.disc(0, canal_y, 6), np.float32(15), hu)
    hu = np.where(vert, np.float32(rng.uniform(700, 1000)), hu)
    hu = np.where(g.disc(0, spine_y, rv - 2.5), np.float32(rng.uniform(250, 400)), hu)
    aorta = g.disc(-0.5 * rv, spine_y + rv + 10, rng.uniform(9, 12))
    ivc = g.disc(1.3 * rv, spine_y + rv + 8, rng.uniform(8, 11))
    ribs = _ribs(rng, g, rho, fat)
    hu = np.where(ribs, np.float32(rng.uniform(500, 900)), hu)

    zc = rng.uniform(0.0, 0.15) * g.extent[2]
    for side in (-1, 1):  # kidneys, below the liver: enhanced cortex around a darker medulla
        c = (side * (rv + 38), spine_y + 12, zc - 0.32 * g.extent[2])
        kidney = g.blob(rng, c, (22, 30, 45), 0.05) & inner
        hu = np.where(kidney, np.float32(rng.uniform(150, 190)), hu)
        hu = np.where(kidney & g.blob(rng, c, (13, 19, 32), 0.05), np.float32(rng.uniform(35, 60)), hu)
    spleen = g.blob(rng, (-0.6 * a, -0.15 * b, zc + 0.05 * g.extent[2]), (0.17 * a, 0.3 * b, 0.25 * g.extent[2]),
                    0.07) & inner
    hu = np.where(spleen, np.float32(rng.uniform(42, 58)), hu)

    organs = vert | arch | aorta | ivc | ribs | spleen
    right = g.blob(rng, (0.42 * a * rng.uniform(0.9, 1.1), 0.05 * b, zc), (0.45 * a, 0.62 * b, 0.42 * g.extent[2]), 0.08)
    left = g.blob(rng, (0.02 * a, 0.42 * b, zc + 0.1 * g.extent[2]), (0.32 * a, 0.25 * b, 0.22 * g.extent[2]), 0.1)
    liver = (right | left) & inner & ~organs & (rho < np.float32(1 - fat - 0.06))
    hu = np.where(liver, np.float32(rng.uniform(55, 70)) + np.float32(5) * _smooth3(rng, shape, 2), hu)
    hu = np.where(_vessels(rng, g, liver), np.float32(rng.uniform(150, 200)), hu)
    hu = np.where(aorta, np.float32(rng.uniform(160, 200)), hu)
    hu = np.where(ivc, np.float32(rng.uniform(130, 160)), hu)

    labels = liver.astype(np.uint8)
    idx = np.argwhere(liver)
    for _ in range(int(rng.choice([0, 1, 2, 2, 3])) if len(idx) else 0):
        centre = (idx[rng.integers(len(idx))] - (np.array(shape) - 1) / 2) * np.array(g.spacing)
        r = rng.uniform(8, 22)
        tumour = g.blob(rng, centre, (r, r * rng.uniform(0.7, 1.0), r * rng.uniform(0.7, 1.0)), 0.12) & liver
        hu = np.where(tumour, np.float32(rng.uniform(20, 42)) + np.float32(6) * _smooth3(rng, shape, 2), hu)
        labels[tumour] = 2

    sigma = rng.uniform(0.5, 0.9)  # partial volume in-plane, then scanner noise
    hu = cv2.GaussianBlur(hu, (0, 0), sigma)  # (X, Y, Z) as (rows, cols, channels): blurs each axial slice
    hu += np.float32(rng.uniform(8, 18)) * rng.standard_normal(shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), labels, g.spacing


def _lps(data: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (RAS+) array → (array stored with x and y flipped, its affine), centred on the origin."""
    shape = np.array(data.shape, np.float64)
    sx, sy, sz = spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [sx * (shape[0] - 1) / 2, sy * (shape[1] - 1) / 2, -sz * (shape[2] - 1) / 2]
    return np.ascontiguousarray(data[::-1, ::-1, :]), affine


def synth_lits(out_root: str | os.PathLike, n: int = 5, seed: int = 0, size: int = 128, slices: int = 24, *,
               progress: bool = False) -> Path:
    """Write n volumes and segmentations (size x size x slices voxels) to `out_root`; returns it."""
    if seed < 0 or n < 1 or size < 32 or slices < 4:
        raise DeployError(f"synthetic LiTS set needs seed >= 0, n >= 1, size >= 32 and slices >= 4; "
                          f"got seed={seed}, n={n}, size={size}, slices={slices}")
    from tqdm import tqdm

    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    planned = {f"{kind}-{i}.nii" for i in range(n) for kind in ("volume", "segmentation")}
    foreign = sorted(p.name for p in root.iterdir() if _LITS_FILE.match(p.name) and p.name not in planned)
    if foreign:
        raise DeployError(f"{root} already holds {len(foreign)} LiTS file(s) this set would not write "
                          f"(e.g. {foreign[0]}); remove them or choose another OUT")
    for i in tqdm(range(n), desc="lits", unit="vol", disable=not progress):
        hu, labels, spacing = _case(np.random.default_rng([seed, i]), (size, size, slices))
        data, affine = _lps(hu, spacing)
        write_nifti(root / f"volume-{i}.nii", data, affine)
        write_nifti(root / f"segmentation-{i}.nii", _lps(labels, spacing)[0], affine)
    return root
