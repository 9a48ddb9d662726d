"""Build YAML / vdsp JSON loading: every vendor file loads unchanged; every bad config names its key."""
import json
import warnings
from pathlib import Path

import pytest
import yaml

from deploy.config import UnknownKeyWarning, load_build_config, load_vdsp_config
from deploy.config.ops import CvtColor, DecodeImage, Normalize, Resize, ToTensor
from deploy.errors import ConfigError, UnsupportedError


def _assert_vendor_files_load(vendor_dir: Path) -> None:
    yamls = sorted(vendor_dir.rglob("*.yaml"))
    jsons = sorted(vendor_dir.rglob("*.json"))
    assert len(yamls) >= 3 and len(jsons) >= 3
    for f in yamls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = load_build_config(f)
        assert cfg.frontend.shape == {"input": (1, 3, 96, 96)}
        assert cfg.backend.dtype == "int8" and cfg.backend.quantize.calibrate_mode == "kl_divergence"
        # device-only vendor keys load with a warning naming key and file
        assert any("data_transport_mode" in str(w.message) and str(f.resolve()) in str(w.message) for w in caught)
    for f in jsons:
        v = load_vdsp_config(f)
        assert v.out_size == (96, 96) and v.color_cvt == "RGB2BGR"
        assert v.norma_type == "DIV255_MINUSMEAN_DIVSTD" and v.mean == (0.5,) * 3 and v.std == (0.5,) * 3


def test_every_vendor_format_file_loads(vendor_dir: Path):
    _assert_vendor_files_load(vendor_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownKeyWarning)
        schemas = {load_build_config(f).schema for f in vendor_dir.rglob("*.yaml")}
    formats = {next(iter(json.loads(f.read_text()))) for f in vendor_dir.rglob("*.json")}
    assert schemas == {"current", "legacy"} and formats == {"OpType", "vdsp_op_type"}  # both of each


def test_every_shared_vendor_reference_file_loads(shared_vendor_dir: Path):
    """The vendor's own files, when a folder beside the clone has them (skips with its reason otherwise)."""
    _assert_vendor_files_load(shared_vendor_dir)


def test_current_schema_fields(vendor_dir: Path):
    cfg = load_build_config(vendor_dir / "unetpp" / "official_unetpp.yaml")
    assert cfg.name == "official_unetpp_int8" and cfg.schema == "current"
    # relative paths resolve against the YAML's folder
    assert cfg.frontend.checkpoint == (vendor_dir / "unetpp" / "onnx" / "unetpp-96.onnx").resolve()
    assert cfg.prefix == (vendor_dir / "unetpp" / "deploy_weights" / "official_unetpp_int8" / "mod").resolve()
    assert cfg.dataset.suffix == "png" and cfg.dataset.get_data_num == 50
    assert cfg.dataset.process_ops == (
        DecodeImage(), CvtColor("COLOR_RGB2BGR"), Resize((96, 96)),
        Normalize("DIV255_MINUSMEAN_DIVSTD", (0.5,) * 3, (0.5,) * 3), ToTensor())
    assert cfg.backend.quantize.quantize_per_channel is True


def test_legacy_schema_and_output_name(vendor_dir: Path):
    cfg = load_build_config(vendor_dir / "unetpp" / "legacy" / "config.yaml")
    assert cfg.schema == "legacy" and cfg.name == "unetpp"
    assert cfg.dataset.get_data_num == 100
    assert cfg.artifact_dir.name == "unetpp-int8-kl_divergence-3_96_96-vacc"
    assert cfg.prefix.name == "unetpp"
    assert cfg.with_dtype("fp16").artifact_dir.name == "unetpp-fp16-none-3_96_96-vacc"


def test_with_dtype_renames_current_schema(vendor_dir: Path):
    cfg = load_build_config(vendor_dir / "unetpp" / "official_unetpp.yaml")
    assert cfg.with_dtype("fp16").name == "official_unetpp_fp16"
    assert cfg.with_dtype("int8") is cfg
    with pytest.raises(ConfigError, match="backend.dtype.*int4"):
        cfg.with_dtype("int4")


def test_legacy_vdsp_half_bit_patterns(vendor_dir: Path):
    a = load_vdsp_config(vendor_dir / "unetpp" / "legacy" / "unetzoo-unetpp-vdsp_params.json")
    b = load_vdsp_config(vendor_dir / "unetpp" / "unetzoo-unetpp-vdsp_params.json")
    assert a.mean == b.mean == (0.5, 0.5, 0.5)  # 14336 is 0.5 in IEEE half precision
    fields = ("op_type", "image_format", "out_size", "resize_type", "color_cvt", "norma_type", "std")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]


BASE = {
    "name": "m",
    "frontend": {"type": "onnx", "checkpoint": "m.onnx", "shape": {"input": [1, 3, 96, 96]}, "dtype": "fp32"},
    "backend": {"type": "tvm_vacc", "dtype": "fp32", "quantize": {"calibrate_mode": "kl_divergence"}},
    "dataset": {"path": "imgs", "sampler": {"suffix": "png", "get_data_num": 5},
                "process_ops": [{"type": "DecodeImage"}, {"type": "Resize", "size": [96, 96]}]},
    "workspace": {"path": "ws"},
}


def _write(tmp_path: Path, edit) -> Path:
    data = json.loads(json.dumps(BASE))
    edit(data)
    f = tmp_path / "build.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def _set(path: str, value):
    def edit(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return edit


@pytest.mark.parametrize("path,value,needle", [
    ("backend.quantize.calibrate_mode", "foo",
     r"backend\.quantize\.calibrate_mode: unsupported value 'foo'; accepted: kl_divergence, percentile, max, mse"),
    ("backend.dtype", "int4", r"backend\.dtype: unsupported value 'int4'; accepted: fp32, fp16, int8"),
    ("backend.dtype", KeyError, r"backend\.dtype: required key is missing"),
    ("frontend", KeyError, r"frontend: required section is missing"),
    ("frontend.shape", {"input": [1, 3, 96]}, r"frontend\.shape\.input: expected a positive \[N, C, H, W\]"),
    ("frontend.shape", {"input": "big"}, r"frontend\.shape\.input: expected a list"),
    ("name", 5, r"name: expected a string, got int 5"),
    ("name", "a/b", r"name: must be a plain folder name"),
    ("backend.quantize.quantize_per_channel", "yes", r"quantize_per_channel: expected a boolean"),
    ("backend.quantize.percentile", 120, r"percentile: must be in \(0, 100\]"),
    ("backend.quantize.skip_nodes", ["conv("], r"skip_nodes: not a valid regular expression"),
    ("dataset.sampler", {"suffix": "png", "get_data_num": 0}, r"dataset\.sampler\.get_data_num: must be positive"),
    ("dataset.process_ops", [{"type": "Blur"}],
     r"dataset\.process_ops\[0\]\.type: unsupported value 'Blur'; accepted: DecodeImage"),
    ("dataset.process_ops", [{"type": "Resize", "size": [96, 0]}],
     r"process_ops\[0\]\.size: expected \[H, W\] with positive values"),
    ("dataset.process_ops", [{"type": "Normalize", "mean": [0.5, 0.5], "std": [1, 1, 1]}],
     r"process_ops\[0\]\.mean: expected 3 numbers"),
    ("dataset.process_ops", [{"type": "CvtColor", "code": "COLOR_RGB2HSV"}],
     r"process_ops\[0\]\.code: unsupported value"),
    ("backend.compile", {"batch_sizes": [0]}, r"backend\.compile\.batch_sizes: expected positive batch sizes"),
])
def test_bad_build_config_names_the_key(tmp_path, path, value, needle):
    f = _write(tmp_path, _set(path, value))
    with pytest.raises(ConfigError, match=needle) as e:
        load_build_config(f)
    assert str(f) in str(e.value)


def test_unknown_key_warns_with_key_and_file(tmp_path):
    f = _write(tmp_path, _set("backend.quantize.calibrate_chunk_by", 10))
    with pytest.warns(UnknownKeyWarning, match=r"build\.yaml: backend\.quantize\.calibrate_chunk_by: unknown key"):
        load_build_config(f)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="build file not found"):
        load_build_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_build_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_build_config(bad)


def test_normalize_semantics(tmp_path):
    ops = [{"type": "Normalize", "mean": [123.0, 117.0, 104.0], "std": [58.0, 57.0, 57.0], "div255": False},
           {"type": "Normalize", "norm_type": None, "mean": [0.5] * 3, "std": [0.5] * 3},
           {"type": "Normalize"},
           {"type": "Normalize", "norm_type": "DIV1275_MINUSONE"}]
    cfg = load_build_config(_write(tmp_path, _set("dataset.process_ops", ops)))
    assert [op.norma_type for op in cfg.dataset.process_ops] == [
        "MINUSMEAN_DIVSTD", "DIV255", "DIV255", "DIV1275_MINUSONE"]


def _vdsp(tmp_path: Path, cfg: dict) -> Path:
    base = {"IimageFormat": "RGB_PLANAR", "IimageWidth": 96, "IimageHeight": 96, "OimageWidth": 96,
            "OimageHeight": 96, "Mean": [0.5] * 3, "Std": [0.5] * 3, "NormaType": "DIV255_MINUSMEAN_DIVSTD",
            "ColorCvtCode": "RGB2BGR", "ResizeType": "BILINEAR_CV"}
    base.update(cfg)
    base = {k: v for k, v in base.items() if v is not KeyError}
    f = tmp_path / "v.json"
    f.write_text(json.dumps({"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR", "OpConfig": base}))
    return f


@pytest.mark.parametrize("edit,needle", [
    ({"NormaType": "DIV7"}, r"OpConfig\.NormaType: unsupported value 'DIV7'; accepted: EQUAL"),
    ({"ResizeType": "BICUBIC"}, r"OpConfig\.ResizeType: unsupported value 'BICUBIC'"),
    ({"ColorCvtCode": "RGB2HSV"}, r"OpConfig\.ColorCvtCode: unsupported value 'RGB2HSV'; accepted: NO_CHANGE"),
    ({"OimageWidth": KeyError}, r"OpConfig\.OimageWidth: required key is missing"),
    ({"OimageHeight": -3}, r"OpConfig\.OimageHeight: must be positive"),
    ({"Mean": [0.5]}, r"OpConfig\.Mean: expected 3 numbers"),
    ({"IimageFormat": "YUV_NV12"}, r"OpConfig\.IimageFormat: unsupported value 'YUV_NV12'"),
])
def test_bad_vdsp_names_the_key(tmp_path, edit, needle):
    f = _vdsp(tmp_path, edit)
    with pytest.raises(ConfigError, match=needle) as e:
        load_vdsp_config(f)
    assert str(f) in str(e.value)


def test_vdsp_letterbox_is_reported_unsupported(tmp_path):
    f = tmp_path / "lb.json"
    f.write_text(json.dumps({"OpType": "FUSION_OP_RGB_LETTERBOX_CVTCOLOR_NORM_TENSOR", "OpConfig": {}}))
    with pytest.raises(UnsupportedError, match="LETTERBOX.*not implemented"):
        load_vdsp_config(f)


def test_vdsp_crop_variant(tmp_path):
    f = tmp_path / "crop.json"
    cfg = {"IimageFormat": "RGB888", "OimageWidth": 64, "OimageHeight": 48, "ResizeWidth": 100,
           "ResizeHeight": 80, "CropX": 10, "CropY": 20, "NormaType": "DIV255", "ColorCvtCode": "NO_CHANGE",
           "ResizeType": "BILINEAR_PILLOW"}
    f.write_text(json.dumps({"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR", "OpConfig": cfg}))
    v = load_vdsp_config(f)
    assert v.resize_size == (80, 100) and v.crop_xy == (10, 20) and v.out_size == (48, 64)
    cfg["CropX"] = 50
    f.write_text(json.dumps({"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR", "OpConfig": cfg}))
    with pytest.raises(ConfigError, match="crop window"):
        load_vdsp_config(f)
