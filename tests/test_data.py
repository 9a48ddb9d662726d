"""deploy.data: decoding, vendor folder layouts, calibration sampling, synthetic sets, `deploy data synth`."""
from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deploy.cli import cli
from deploy.data.image import ImageReadError, png_palette, read_image_rgb, read_label_map, read_mask
from deploy.data.readers import DataWarning, Sample, list_images, pair_masks, select_calibration
from deploy.data.synth import dsb2018_id, synth_dsb2018, synth_portrait
from deploy.errors import DeployError


T = TypeVar("T")


# ----------------------------------------------------------------------------- helpers
def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def write_gif(path: Path, idx: np.ndarray, palette: list[tuple[int, int, int]]) -> Path:
    """A one-frame GIF89a of palette indices (the format of Carvana's `<id>_mask.gif`).

    OpenCV cannot write an exact palette GIF, so this encodes LZW without compression: a clear code
    before the code table would grow, so every code keeps the initial width.
    """
    h, w = idx.shape
    bits = max(1, int(np.ceil(np.log2(len(palette)))))
    table = bytearray(3 * (1 << bits))
    for i, c in enumerate(palette):
        table[3 * i:3 * i + 3] = bytes(c)
    m = max(2, bits)
    clear, eoi, width = 1 << m, (1 << m) + 1, m + 1
    run = (1 << width) - (clear + 2)
    flat = idx.ravel().tolist()
    codes = []
    for i in range(0, len(flat), run):
        codes += [clear] + flat[i:i + run]
    codes.append(eoi)
    acc = nbits = 0
    lzw = bytearray()
    for c in codes:
        acc |= c << nbits
        nbits += width
        while nbits >= 8:
            lzw.append(acc & 255)
            acc >>= 8
            nbits -= 8
    if nbits:
        lzw.append(acc & 255)
    blocks = b"".join(bytes([len(lzw[i:i + 255])]) + bytes(lzw[i:i + 255]) for i in range(0, len(lzw), 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80 | (bits - 1), 0, 0) + bytes(table)
                     + b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + bytes([m]) + blocks + b"\x00;")
    return path


def rgb_image(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def binary_mask(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w)) > 0.5).astype(np.uint8) * 255


def iou(p: np.ndarray, g: np.ndarray) -> float:
    union = (p | g).sum()
    return 1.0 if union == 0 else float((p & g).sum() / union)


# ----------------------------------------------------------------------------- image decoding
def test_read_image_rgb_returns_rgb_order(tmp_path):
    rgb = rgb_image(0)
    write_png(tmp_path / "a.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, rgb)


def test_read_image_rgb_converts_gray_and_alpha(tmp_path):
    gray = binary_mask(1)
    write_png(tmp_path / "g.png", gray)
    assert read_image_rgb(tmp_path / "g.png").shape == (24, 32, 3)
    bgra = np.dstack([rgb_image(2), np.full((24, 32), 255, np.uint8)])
    write_png(tmp_path / "a.png", bgra)
    np.testing.assert_array_equal(read_image_rgb(tmp_path / "a.png"), cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB))


def test_read_mask_png_and_jpg(tmp_path):
    m = binary_mask(3)
    write_png(tmp_path / "m.png", m)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), m)
    write_png(tmp_path / "m.jpg", m)
    j = read_mask(tmp_path / "m.jpg")
    assert j.shape == m.shape and j.dtype == np.uint8 and ((j > 125) == (m > 125)).mean() > 0.9


def _voc_palette() -> list[int]:
    """VOC's colour map: the bits of the index spread over R, G and B (every entry distinct)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def test_read_label_map_voc_palette_gives_class_ids(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    ids = np.zeros((6, 7), np.uint8)
    ids[1:3, 1:4], ids[4, :] = 15, 1
    ids[0, :] = 255  # VOC boundary / ignore
    img = Image.fromarray(ids, mode="P")
    img.putpalette(_voc_palette())
    img.save(tmp_path / "voc.png")
    assert png_palette((tmp_path / "voc.png").read_bytes()).shape == (256, 3)
    np.testing.assert_array_equal(read_label_map(tmp_path / "voc.png"), ids)
    assert not np.array_equal(read_mask(tmp_path / "voc.png"), ids)  # grey levels of the colours, not ids
    cv2.imwrite(str(tmp_path / "grey.png"), ids)  # a plain grey class map reads as its values
    assert png_palette((tmp_path / "grey.png").read_bytes()) is None
    np.testing.assert_array_equal(read_label_map(tmp_path / "grey.png"), ids)


def test_read_mask_carvana_gif_palette(tmp_path):
    idx = (np.random.default_rng(4).random((37, 53)) > 0.6).astype(np.uint8)
    write_gif(tmp_path / "car_mask.gif", idx, [(0, 0, 0), (255, 255, 255)])
    np.testing.assert_array_equal(read_mask(tmp_path / "car_mask.gif"), idx * 255)


def test_read_mask_gif_gray_levels(tmp_path):
    levels = np.random.default_rng(5).integers(0, 256, (20, 300), dtype=np.uint8)
    write_gif(tmp_path / "g.gif", levels, [(i, i, i) for i in range(256)])
    np.testing.assert_array_equal(read_mask(tmp_path / "g.gif"), levels)


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(tmp_path: Path, ext: str) -> Path:
    ok, buf = cv2.imencode(ext, rgb_image(6, 64, 64))
    data = buf.tobytes()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: len(data) * 3 // 5])
    return path


@pytest.mark.parametrize("make", [
    pytest.param(lambda d: _file(d / "empty.png", b""), id="empty"),
    pytest.param(lambda d: _file(d / "junk.png", b"not an image at all"), id="junk"),
    pytest.param(lambda d: _truncated(d, ".png"), id="truncated-png"),
    pytest.param(lambda d: _truncated(d, ".jpg"), id="truncated-jpg"),
    pytest.param(lambda d: d / "missing.png", id="missing"),
    pytest.param(lambda d: d, id="directory"),
])
@pytest.mark.parametrize("reader", [read_image_rgb, read_mask])
def test_unreadable_raises_naming_the_path(tmp_path, make, reader):
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as e:
        reader(path)
    assert str(path) in str(e.value) and e.value.path == Path(path)
    assert isinstance(e.value, DeployError)


def test_truncated_gif_raises(tmp_path):
    p = write_gif(tmp_path / "m_mask.gif", np.ones((30, 30), np.uint8), [(0, 0, 0), (255, 255, 255)])
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(ImageReadError, match="m_mask.gif"):
        read_mask(p)


# ----------------------------------------------------------------------------- listings and layouts
def test_list_images_sorted_filtered(tmp_path):
    for name in ["b.png", "a.png", "c.jpg", "notes.txt", ".hidden.png", "Z.PNG"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["Z.PNG", "a.png", "b.png", "c.jpg"]
    for suffix in ("png", ".png", "PNG"):
        assert [p.name for p in list_images(tmp_path, suffix)] == ["Z.PNG", "a.png", "b.png"]
    with pytest.raises(DeployError, match="nope"):
        list_images(tmp_path / "nope")


def test_pair_dsb2018_same_name(tmp_path):
    root = tmp_path / "dsb2018_256_val"
    ids = ["f3a1", "0b2c", "9d9d"]
    for k, i in enumerate(ids):
        write_png(root / "images" / f"{i}.png", rgb_image(k))
        write_png(root / "masks" / f"{i}.png", binary_mask(k))
    samples = pair_masks(root / "images", root / "masks")
    assert samples == [Sample(root / "images" / f"{i}.png", root / "masks" / f"{i}.png") for i in sorted(ids)]


def test_pair_portrait_matte(tmp_path):
    root = tmp_path / "testing"
    for n in ["00002", "00001", "00010"]:
        write_png(root / "images" / f"{n}.png", rgb_image(1))
        write_png(root / "masks" / f"{n}_matte.png", binary_mask(1))
    samples = pair_masks(root / "images", root / "masks")
    assert [(s.image.name, s.mask.name) for s in samples] == [
        ("00001.png", "00001_matte.png"), ("00002.png", "00002_matte.png"), ("00010.png", "00010_matte.png")]


def test_pair_portrait_matte_in_one_folder(tmp_path):
    for n in ["00001", "00002"]:
        write_png(tmp_path / f"{n}.png", rgb_image(1))
        write_png(tmp_path / f"{n}_matte.png", binary_mask(1))
    samples = pair_masks(tmp_path, tmp_path)
    assert [(s.image.name, s.mask.name) for s in samples] == [("00001.png", "00001_matte.png"),
                                                              ("00002.png", "00002_matte.png")]


def test_pair_carvana_jpg_with_gif_masks(tmp_path):
    ids = ["0cdf5b5d0ce1_01", "0cdf5b5d0ce1_02"]
    for i in ids:
        write_png(tmp_path / "imgs" / f"{i}.jpg", rgb_image(2))
        write_gif(tmp_path / "masks" / f"{i}_mask.gif", np.eye(8, dtype=np.uint8), [(0, 0, 0), (255, 255, 255)])
    samples = pair_masks(tmp_path / "imgs", tmp_path / "masks")
    assert [(s.image.name, s.mask.name) for s in samples] == [(f"{i}.jpg", f"{i}_mask.gif") for i in ids]
    assert np.unique(read_mask(samples[0].mask)).tolist() == [0, 255]


def test_pair_same_stem_other_extension(tmp_path):
    write_png(tmp_path / "im" / "a.jpg", rgb_image(0))
    write_png(tmp_path / "gt" / "a.png", binary_mask(0))
    expected = [Sample(tmp_path / "im" / "a.jpg", tmp_path / "gt" / "a.png")]
    assert pair_masks(tmp_path / "im", tmp_path / "gt") == expected


def test_pair_explicit_suffix(tmp_path):
    for i in ["x", "y"]:
        write_png(tmp_path / "im" / f"{i}.png", rgb_image(0))
        write_png(tmp_path / "gt" / f"{i}_label.png", binary_mask(0))
        write_png(tmp_path / "gt" / f"{i}.png", binary_mask(1))  # a decoy the auto rules would pick
    s = pair_masks(tmp_path / "im", tmp_path / "gt", mask_suffix="_label.png")
    assert [x.mask.name for x in s] == ["x_label.png", "y_label.png"]
    s = pair_masks(tmp_path / "im", tmp_path / "gt", mask_suffix="_label")  # any extension
    assert [x.mask.name for x in s] == ["x_label.png", "y_label.png"]
    s = pair_masks(tmp_path / "im", tmp_path / "gt", mask_suffix="png")  # a bare extension: same stem
    assert [x.mask.name for x in s] == ["x.png", "y.png"]
    assert [x.mask.name for x in pair_masks(tmp_path / "im", tmp_path / "gt")] == ["x.png", "y.png"]


def test_pair_missing_mask_is_reported_not_fatal(tmp_path):
    for i in ["a", "b", "c"]:
        write_png(tmp_path / "images" / f"{i}.png", rgb_image(0))
    write_png(tmp_path / "masks" / "a.png", binary_mask(0))
    write_png(tmp_path / "masks" / "c.png", binary_mask(0))
    with pytest.warns(DataWarning, match=r"1 of 3 images .* no mask .*b\.png"):
        samples = pair_masks(tmp_path / "images", tmp_path / "masks")
    assert [s.mask.name if s.mask else None for s in samples] == ["a.png", None, "c.png"]


def test_pair_no_masks_at_all_is_an_error(tmp_path):
    write_png(tmp_path / "images" / "a.png", rgb_image(0))
    write_png(tmp_path / "masks" / "other.png", binary_mask(0))
    with pytest.raises(DeployError, match="masks"):
        pair_masks(tmp_path / "images", tmp_path / "masks")
    assert pair_masks(tmp_path / "images", None) == [Sample(tmp_path / "images" / "a.png", None)]


# ----------------------------------------------------------------------------- robust batch reading
class SkipUnreadable(Generic[T]):
    """Iterate `(item, reader(item))`, skipping items whose read raises ImageReadError.

    Each skipped item is kept in `.skipped` as `(item, reason)` (the reason names the file), so a
    run over 10k images finishes and can say which files it left out:

        reads = SkipUnreadable(samples, lambda s: (read_image_rgb(s.image), read_mask(s.mask)))
        for sample, (img, gt) in reads: ...
        if reads.skipped: print(reads.summary())
    """

    def __init__(self, items: Iterable[T], reader: Callable[[T], Any] = read_image_rgb,
                 catch: tuple[type[BaseException], ...] = (ImageReadError,)) -> None:
        self.items = list(items)
        self.reader = reader
        self.catch = catch
        self.skipped: list[tuple[T, str]] = []

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[T, Any]]:
        self.skipped = []
        for item in self.items:
            try:
                value = self.reader(item)
            except self.catch as e:
                self.skipped.append((item, str(e)))
                continue
            yield item, value

    def summary(self, limit: int = 5) -> str:
        """One line per skipped file (at most `limit`), after a count: for logs and the CLI."""
        lines = [f"skipped {len(self.skipped)} of {len(self.items)} unreadable file(s)"]
        lines += [f"  {reason}" for _, reason in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


def read_all(items: Iterable[T], reader: Callable[[T], Any] = read_image_rgb
             ) -> tuple[list[tuple[T, Any]], list[tuple[T, str]]]:
    """Read every item: `(ok [(item, value)], skipped [(item, reason)])`; for small sets (holds all in memory)."""
    reads = SkipUnreadable(items, reader)
    ok = list(reads)
    return ok, reads.skipped


def test_skip_unreadable_counts_and_names(tmp_path):
    good = [write_png(tmp_path / f"{i}.png", cv2.cvtColor(rgb_image(i), cv2.COLOR_RGB2BGR)) for i in range(4)]
    empty = tmp_path / "1b_empty.png"
    empty.write_bytes(b"")
    broken = _truncated(tmp_path, ".png")
    paths = sorted(good + [empty, broken])
    reads = SkipUnreadable(paths)
    assert len(reads) == 6
    out = list(reads)
    assert [p for p, _ in out] == good
    np.testing.assert_array_equal(out[2][1], rgb_image(2))
    assert [p for p, _ in reads.skipped] == sorted([empty, broken])
    assert all(str(p) in reason for p, reason in reads.skipped)
    assert reads.summary().startswith("skipped 2 of 6 unreadable")

    ok, skipped = read_all(paths)
    assert len(ok) == 4 and len(skipped) == 2


def test_skip_unreadable_pairs(tmp_path):
    write_png(tmp_path / "im" / "a.png", rgb_image(0))
    write_png(tmp_path / "im" / "b.png", rgb_image(1))
    write_png(tmp_path / "gt" / "a.png", binary_mask(0))
    (tmp_path / "gt" / "b.png").write_bytes(b"\x89PNG\r\n")
    samples = pair_masks(tmp_path / "im", tmp_path / "gt")
    reads = SkipUnreadable(samples, lambda s: (read_image_rgb(s.image), read_mask(s.mask)))
    assert [s.image.name for s, _ in reads] == ["a.png"]
    assert len(reads.skipped) == 1 and "gt/b.png" in reads.skipped[0][1]


# ----------------------------------------------------------------------------- calibration sampling
@pytest.fixture
def calib_dir(tmp_path):
    for i in range(100):
        (tmp_path / f"img_{i:03d}.png").write_bytes(b"x")
        (tmp_path / f"img_{i:03d}.jpg").write_bytes(b"x")
    return tmp_path


def test_select_calibration_seeded_sorted(calib_dir):
    a = select_calibration(calib_dir, "png", 10, seed=0)
    assert a == select_calibration(calib_dir, "png", 10, seed=0)
    assert a == sorted(a) and len(set(a)) == 10 and all(p.suffix == ".png" for p in a)
    assert a != select_calibration(calib_dir, "png", 10, seed=1)
    files = sorted(calib_dir.glob("*.png"))
    idx = np.random.default_rng(0).choice(100, size=10, replace=False)
    assert a == sorted(files[i] for i in idx)


def test_select_calibration_few_or_none(calib_dir):
    with pytest.warns(DataWarning, match="only 100"):
        got = select_calibration(calib_dir, ".jpg", 150)
    assert got == sorted(calib_dir.glob("*.jpg"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(select_calibration(calib_dir, "jpg", 100)) == 100
    with pytest.raises(DeployError, match=r"\.bmp.*" + calib_dir.name):
        select_calibration(calib_dir, "bmp", 10)
    with pytest.raises(DeployError):
        select_calibration(calib_dir, "png", 0)


# ----------------------------------------------------------------------------- synthetic sets
def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("make", [synth_dsb2018, synth_portrait])
def test_synth_deterministic(tmp_path, make):
    a = make(tmp_path / "a", n=3, seed=7)
    b = make(tmp_path / "b", n=3, seed=7)
    c = make(tmp_path / "c", n=3, seed=8)
    assert _bytes(a) == _bytes(b)
    ca = _bytes(c)
    assert ca.keys() == _bytes(a).keys() and all(ca[k] != v for k, v in _bytes(a).items())
    again = make(tmp_path / "a", n=3, seed=7)  # re-run in place: identical bytes, no temp files left
    assert _bytes(again) == _bytes(b)
    prefix = make(tmp_path / "d", n=2, seed=7)  # image i does not depend on n
    assert _bytes(prefix).items() <= _bytes(a).items()


def test_synth_dsb2018_layout(tmp_path):
    root = synth_dsb2018(tmp_path, n=4, seed=0)
    assert root == tmp_path / "dsb2018_256_val"
    names = sorted(f"{dsb2018_id(i)}.png" for i in range(4))
    assert sorted(p.name for p in (root / "images").iterdir()) == names
    assert sorted(p.name for p in (root / "masks").iterdir()) == names
    assert all(len(n) == 68 and int(n[:-4], 16) >= 0 for n in names)
    for s in pair_masks(root / "images", root / "masks"):
        img, m = read_image_rgb(s.image), read_mask(s.mask)
        assert img.shape == (256, 256, 3) and m.shape == (256, 256)
        assert set(np.unique(m).tolist()) == {0, 255}
        raw = cv2.imread(str(s.mask), cv2.IMREAD_UNCHANGED)
        assert raw.ndim == 2 and raw.dtype == np.uint8


def test_synth_portrait_layout(tmp_path):
    root = synth_portrait(tmp_path, n=3, seed=0, size=128)
    assert root == tmp_path / "testing"
    assert sorted(p.name for p in (root / "images").iterdir()) == ["00001.png", "00002.png", "00003.png"]
    assert sorted(p.name for p in (root / "masks").iterdir()) == ["00001_matte.png", "00002_matte.png",
                                                                  "00003_matte.png"]
    samples = pair_masks(root / "images", root / "masks")
    assert all(s.mask is not None for s in samples)
    m = read_mask(samples[0].mask)
    assert read_image_rgb(samples[0].image).shape == (128, 128, 3) and m.shape == (128, 128)
    soft = ((m > 0) & (m < 255)).sum()
    assert soft > 0.01 * m.size  # soft matte edges, not a binary mask
    assert m[-1].mean() > 128 and m[0].mean() < 128  # person at the bottom of the frame, head below the top


def test_synth_refuses_to_mix_with_other_files(tmp_path):
    synth_dsb2018(tmp_path, n=3, seed=0, size=64)
    synth_dsb2018(tmp_path, n=4, seed=1, size=64)  # a superset of names, overwritten in place
    with pytest.raises(DeployError, match="would not write"):
        synth_dsb2018(tmp_path, n=2, seed=0, size=64)
    with pytest.raises(DeployError, match="n=0"):
        synth_portrait(tmp_path, n=0)
    with pytest.raises(DeployError, match="seed=-1"):
        synth_portrait(tmp_path, n=1, seed=-1)


@pytest.fixture(scope="module")
def dsb_set(tmp_path_factory):
    root = synth_dsb2018(tmp_path_factory.mktemp("dsb"), n=32, seed=3)
    return pair_masks(root / "images", root / "masks")


@pytest.fixture(scope="module")
def portrait_set(tmp_path_factory):
    root = synth_portrait(tmp_path_factory.mktemp("portrait"), n=24, seed=3)
    return pair_masks(root / "images", root / "masks")


def _vendor_gt(mask: np.ndarray, size: int) -> np.ndarray:
    """The vendor's GT: resized bilinear to the model size, binarised at 125."""
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR) > 125


@pytest.mark.slow  # the module's 56 generated images
def test_synth_mask_coverage_plausible(dsb_set, portrait_set):
    dsb = np.array([(read_mask(s.mask) > 125).mean() for s in dsb_set])
    assert 0.05 <= dsb.mean() <= 0.40 and dsb.min() > 0.01 and dsb.max() < 0.6
    por = np.array([(read_mask(s.mask) > 125).mean() for s in portrait_set])
    assert 0.15 <= por.mean() <= 0.6 and por.min() > 0.05 and por.max() < 0.9


@pytest.mark.slow  # the module's 56 generated images
def test_synth_dsb2018_has_both_modalities(dsb_set):
    bright_bg = [np.median(read_image_rgb(s.image)) > 127 for s in dsb_set]
    assert 0.2 < np.mean(bright_bg) < 0.8  # brightfield (light) and fluorescence (dark) backgrounds


@pytest.mark.slow  # the module's 56 generated images
@pytest.mark.parametrize("which, size", [("dsb", 96), ("portrait", 128)])
def test_synth_not_trivially_separable(dsb_set, portrait_set, which, size):
    """A per-image Otsu threshold, even with the better polarity chosen by the answer, stays far from 0.9."""
    scores = []
    for s in dsb_set if which == "dsb" else portrait_set:
        gray = cv2.resize(cv2.cvtColor(read_image_rgb(s.image), cv2.COLOR_RGB2GRAY), (size, size),
                          interpolation=cv2.INTER_LINEAR)
        gt = _vendor_gt(read_mask(s.mask), size)
        _, t = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        scores.append(max(iou(t > 0, gt), iou(t == 0, gt)))
    assert np.mean(scores) < 0.8


# ----------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("kind, sub, mask_name", [("dsb2018", "dsb2018_256_val", dsb2018_id(0) + ".png"),
                                                  ("portrait", "testing", "00001_matte.png")])
def test_cli_synth(tmp_path, kind, sub, mask_name):
    res = CliRunner().invoke(cli, ["data", "synth", kind, str(tmp_path), "--n", "2", "--seed", "1", "--size", "64"])
    assert res.exit_code == 0, res.output
    assert str(tmp_path / sub / "images") in res.output and "wrote 2" in res.output
    assert len(list((tmp_path / sub / "images").iterdir())) == 2
    assert read_mask(tmp_path / sub / "masks" / mask_name).shape == (64, 64)


def test_cli_synth_bad_args(tmp_path):
    assert CliRunner().invoke(cli, ["data", "synth", "voc", str(tmp_path)]).exit_code != 0
    assert CliRunner().invoke(cli, ["data", "synth", "dsb2018", str(tmp_path), "--n", "0"]).exit_code != 0
