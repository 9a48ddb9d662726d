"""Preprocessing: hand-computed values per NormaType/ColorCvtCode, resize kernels against their
references, and YAML ↔ vdsp equivalence (the check users run before int8 calibration)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deploy.cli import cli
from deploy.config import load_build_config, load_vdsp_config
from deploy.config.ops import CvtColor, Normalize, Resize, ToTensor
from deploy.preprocess import Preprocessor, compare_preprocess, planar_to_hwc, resize
from deploy.preprocess.check import probe_image

PIXEL = np.array([[[0, 51, 255], [102, 204, 153]]], np.uint8)  # 1×2 RGB


@pytest.mark.parametrize("norma,mean,std,expected_first_pixel", [
    ("EQUAL", (9, 9, 9), (9, 9, 9), [0.0, 51.0, 255.0]),
    ("DIV255", (9, 9, 9), (9, 9, 9), [0.0, 0.2, 1.0]),
    ("DIV1275_MINUSONE", (0, 0, 0), (1, 1, 1), [-1.0, 51 / 127.5 - 1, 1.0]),
    ("MINUSMEAN_DIVSTD", (10, 20, 30), (2, 4, 5), [-5.0, 7.75, 45.0]),
    ("DIV255_MINUSMEAN_DIVSTD", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), [-1.0, -0.6, 1.0]),
    ("DIV255_MINUSMEAN_DIVSTD", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
     [-0.485 / 0.229, (0.2 - 0.456) / 0.224, (1 - 0.406) / 0.225]),
])
def test_normalize_hand_computed(norma, mean, std, expected_first_pixel):
    out = Preprocessor([Normalize(norma, mean, std), ToTensor()])(PIXEL)
    assert out.dtype == np.float32 and out.shape == (3, 1, 2)
    np.testing.assert_allclose(out[:, 0, 0], expected_first_pixel, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("code", ["COLOR_RGB2BGR", "COLOR_BGR2RGB"])
def test_cvtcolor_swaps_planes(code):
    out = Preprocessor([CvtColor(code), Normalize("EQUAL"), ToTensor()])(PIXEL)
    np.testing.assert_array_equal(out[:, 0, 0], [255, 51, 0])
    np.testing.assert_array_equal(out[:, 0, 1], [153, 204, 102])


def _vdsp_file(tmp_path, **cfg) -> Path:
    base = {"IimageFormat": "RGB_PLANAR", "IimageWidth": 2, "IimageHeight": 1, "OimageWidth": 2,
            "OimageHeight": 1, "Mean": [10, 20, 30], "Std": [2, 4, 5], "NormaType": "MINUSMEAN_DIVSTD",
            "ColorCvtCode": "NO_CHANGE", "ResizeType": "BILINEAR_CV"}
    base.update(cfg)
    f = tmp_path / "v.json"
    f.write_text(json.dumps({"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR", "OpConfig": base}))
    return f


@pytest.mark.parametrize("code,first", [("NO_CHANGE", [-5.0, 7.75, 45.0]),
                                        ("RGB2BGR", [(255 - 10) / 2, (51 - 20) / 4, (0 - 30) / 5]),
                                        ("BGR2RGB", [(255 - 10) / 2, (51 - 20) / 4, (0 - 30) / 5])])
def test_vdsp_color_codes_hand_computed(tmp_path, code, first):
    """Mean/Std apply to the channels in the order after the colour swap."""
    pre = Preprocessor.from_vdsp(load_vdsp_config(_vdsp_file(tmp_path, ColorCvtCode=code)))
    planar = PIXEL.transpose(2, 0, 1)  # what the vendor runtime receives
    np.testing.assert_allclose(pre(planar_to_hwc(planar))[:, 0, 0], first, rtol=1e-6)


def test_vdsp_bgr888_input_is_swapped_by_load(tmp_path):
    img_path = tmp_path / "a.png"
    cv2.imwrite(str(img_path), PIXEL[..., ::-1])  # cv2 writes BGR → file holds the RGB pixel
    rgb = Preprocessor.from_vdsp(load_vdsp_config(_vdsp_file(tmp_path, NormaType="EQUAL")))
    bgr = Preprocessor.from_vdsp(load_vdsp_config(_vdsp_file(tmp_path, NormaType="EQUAL", IimageFormat="BGR888")))
    np.testing.assert_array_equal(rgb.load(img_path)[:, 0, 0], [0, 51, 255])
    np.testing.assert_array_equal(bgr.load(img_path)[:, 0, 0], [255, 51, 0])


@pytest.mark.parametrize("size", [(96, 96), (300, 260), (57, 131)])
def test_bilinear_cv_equals_cv2(size):
    img = probe_image()
    np.testing.assert_array_equal(resize(img, size, "BILINEAR_CV"),
                                  cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR))


def test_bilinear_is_half_pixel_float():
    img = np.array([[[0], [100]]], np.uint8).repeat(3, axis=2)  # 1×2
    out = resize(img, (1, 4), "BILINEAR")
    # half-pixel centres: src x = (i + 0.5) / 2 - 0.5 → -0.25, 0.25, 0.75, 1.25 → clamp
    np.testing.assert_allclose(out[0, :, 0], [0, 25, 75, 100], atol=1e-4)
    assert out.dtype == np.float32
    np.testing.assert_allclose(resize(probe_image(), (96, 96), "BILINEAR"),
                               cv2.resize(probe_image(), (96, 96)).astype(np.float32), atol=1.0)


@pytest.mark.parametrize("size", [(300, 260), (173, 100), (17, 13), (96, 96), (50, 400)])
def test_bilinear_pillow_matches_pillow(size):
    Image = pytest.importorskip("PIL.Image")
    img = probe_image()
    ref = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BILINEAR))
    ours = resize(img, size, "BILINEAR_PILLOW")
    diff = np.abs(ref.astype(int) - ours)
    assert diff.max() <= 1
    if size[0] == img.shape[0] or size[1] == img.shape[1] or min(size) > max(img.shape[:2]):
        assert diff.max() == 0  # single-axis and pure upscales are bit-exact


def test_crop_variant_geometry(tmp_path):
    f = tmp_path / "crop.json"
    cfg = {"IimageFormat": "RGB_PLANAR", "OimageWidth": 4, "OimageHeight": 3, "ResizeWidth": 10,
           "ResizeHeight": 8, "CropX": 5, "CropY": 2, "NormaType": "EQUAL", "ColorCvtCode": "NO_CHANGE",
           "ResizeType": "BILINEAR_CV"}
    f.write_text(json.dumps({"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR", "OpConfig": cfg}))
    img = probe_image(size=(31, 47))
    out = Preprocessor.from_vdsp(load_vdsp_config(f))(img)
    ref = cv2.resize(img, (10, 8))[2:5, 5:9].transpose(2, 0, 1)
    np.testing.assert_array_equal(out, ref.astype(np.float32))


def test_yaml_and_vdsp_equivalent_for_vendor_unetpp(vendor_dir):
    build = load_build_config(vendor_dir / "unetpp" / "official_unetpp.yaml")
    for vdsp_file in [vendor_dir / "unetpp" / "unetzoo-unetpp-vdsp_params.json",
                      vendor_dir / "unetpp" / "legacy" / "unetzoo-unetpp-vdsp_params.json"]:
        vdsp = load_vdsp_config(vdsp_file)
        results = compare_preprocess(build, vdsp, [probe_image(s, (90 + 40 * s, 256 - 30 * s)) for s in range(3)])
        assert [r.max_abs_diff for r in results] == [0.0, 0.0, 0.0]


def test_preprocessor_out_size_and_implicit_totensor():
    pre = Preprocessor([Resize((12, 20))])
    assert pre.out_size == (12, 20)
    assert pre(probe_image()).shape == (3, 12, 20)


def test_check_preprocess_cli_ok_and_mismatch(vendor_dir, tmp_path):
    yaml_file = vendor_dir / "unetpp" / "official_unetpp.yaml"
    ok = CliRunner().invoke(cli, ["check-preprocess", str(yaml_file),
                                  str(vendor_dir / "unetpp" / "unetzoo-unetpp-vdsp_params.json")])
    assert ok.exit_code == 0, ok.output
    assert "OK: max abs diff 0" in ok.output
    # the field's classic: the vdsp JSON forgot the BGR swap
    bad = _vdsp_file(tmp_path, IimageWidth=96, IimageHeight=96, OimageWidth=96, OimageHeight=96,
                     Mean=[0.5] * 3, Std=[0.5] * 3, NormaType="DIV255_MINUSMEAN_DIVSTD", ColorCvtCode="NO_CHANGE")
    res = CliRunner().invoke(cli, ["check-preprocess", str(yaml_file), str(bad)])
    assert res.exit_code == 1
    assert "MISMATCH" in res.output and "channel order differs" in res.output


REPO_BUILD = Path(__file__).resolve().parents[1] / "build_in" / "build"
REPO_VDSP = Path(__file__).resolve().parents[1] / "vdsp_params" / "unetzoo-unetpp-vdsp_params.json"


@pytest.fixture(scope="module")
def grey_first_dsb(tmp_path_factory):
    """A nuclei folder from the synthetic DSB2018 generator whose first sorted images are grey (as
    its fluorescence images are: 91 of the shipped 200), the colourful ones after them."""
    import shutil

    from deploy.data.image import read_image_rgb
    from deploy.data.synth import synth_dsb2018
    root = tmp_path_factory.mktemp("dsb")
    src = synth_dsb2018(root / "synth", n=24, seed=0) / "images"
    grey, colour = root / "grey", root / "grey_first"
    grey.mkdir()
    colour.mkdir()
    for f in sorted(src.iterdir()):
        img = read_image_rgb(f)
        is_grey = bool((img == img[..., :1]).all())
        shutil.copy(f, colour / (("a_" if is_grey else "b_") + f.name))
        if is_grey:
            shutil.copy(f, grey / f.name)
    assert len(list(grey.iterdir())) >= 4 and len(list(colour.iterdir())) >= len(list(grey.iterdir())) + 4
    return {"grey": grey, "grey_first": colour}


def _check_with_dataset(tmp_path, images: Path, vdsp: Path):
    text = (REPO_BUILD / "official_unetpp.yaml").read_text().replace("../../workspace/data/dsb2018_256_val/images",
                                                                   str(images))
    yaml_file = tmp_path / "b.yaml"
    yaml_file.write_text(text)
    return CliRunner().invoke(cli, ["check-preprocess", str(yaml_file), str(vdsp)])


def _no_swap_vdsp(tmp_path) -> Path:
    """The shipped UNet++ vdsp JSON with its BGR swap removed: the field's classic mistake."""
    cfg = json.loads(REPO_VDSP.read_text())
    cfg["OpConfig"]["ColorCvtCode"] = "NO_CHANGE"
    f = tmp_path / "no_swap.json"
    f.write_text(json.dumps(cfg))
    return f


def test_check_preprocess_defaults_pick_colourful_images_and_catch_a_missing_swap(grey_first_dsb, tmp_path):
    res = _check_with_dataset(tmp_path, grey_first_dsb["grey_first"], _no_swap_vdsp(tmp_path))
    assert res.exit_code == 1 and "MISMATCH" in res.output, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("images: <colour probe>") and "the 4 most colourful of a seeded sample of" in lines[0]
    assert lines[1].startswith("<colour probe>: max abs diff") and "channel order differs" in lines[1]
    used = [Path(x.split(":")[0]).name for x in lines[2:6]]
    assert all(n.startswith("b_") for n in used), used  # the grey a_* images sort first but cannot show it
    assert all("channel order differs" in x for x in lines[2:6])
    ok = _check_with_dataset(tmp_path, grey_first_dsb["grey_first"], REPO_VDSP)
    assert ok.exit_code == 0 and "OK: max abs diff 0 over 5 image(s)" in ok.output, ok.output


def test_check_preprocess_probe_catches_a_missing_swap_on_a_grey_dataset(grey_first_dsb, tmp_path):
    res = _check_with_dataset(tmp_path, grey_first_dsb["grey"], _no_swap_vdsp(tmp_path))
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    assert "channel order differs" in lines[1] and all(x.endswith("max abs diff 0") for x in lines[2:6])
