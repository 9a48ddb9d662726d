"""frontend.type is checked where the model is loaded: every vendor type loads as a build file
(check-preprocess takes it), compile and analyze name the type and the route to ONNX, and a
pytorch build without torch says which extra to install. Needs no torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deploy.cli import cli
from deploy.config import load_build_config
from deploy.errors import UnsupportedError
from deploy.frontend.source import ROUTES, load_source

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "tests" / "fixtures" / "vendor_formats" / "unetpp"


def vendor_yaml(tmp_path: Path, kind: str, checkpoint: str = "./model.bin") -> Path:
    """The vendor's UNet++ build file with another frontend type."""
    doc = yaml.safe_load((VENDOR / "official_unetpp.yaml").read_text())
    doc["frontend"].update(type=kind, checkpoint=checkpoint)
    doc["workspace"] = {"path": str(tmp_path / "ws")}
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("kind,route", [("keras", "tf2onnx"), ("tensorflow", "tf2onnx"), ("caffe", "caffe2onnx"),
                                        ("darknet", "torch.jit.trace"), ("huggingface", "optimum-cli export onnx"),
                                        ("paddle", "paddle2onnx"), ("mystery", "convert the model to ONNX")])
def test_vendor_types_load_and_name_the_route_when_compiled(kind, route, tmp_path):
    cfg = load_build_config(vendor_yaml(tmp_path, kind))
    assert cfg.frontend.type == kind
    with pytest.raises(UnsupportedError) as e:
        load_source(cfg)
    assert f"frontend.type: {kind!r} is not loaded by segdeploy (accepted: onnx, pytorch)" in str(e.value)
    assert route in str(e.value) and str(cfg.source) in str(e.value)
    assert kind in ROUTES or kind == "mystery"


def test_check_preprocess_takes_any_frontend_and_analyze_names_the_route(tmp_path):
    vdsp = VENDOR / "unetzoo-unetpp-vdsp_params.json"
    for kind in ("pytorch", "keras"):
        r = CliRunner().invoke(cli, ["check-preprocess", str(vendor_yaml(tmp_path, kind)), str(vdsp)])
        assert r.exit_code == 0 and "OK: max abs diff 0" in r.output, r.output
    r = CliRunner().invoke(cli, ["analyze", str(vendor_yaml(tmp_path, "caffe"))])
    assert isinstance(r.exception, UnsupportedError)  # deploy.cli.main prints it without a traceback
    assert "frontend.type: 'caffe'" in str(r.exception) and "caffe2onnx" in str(r.exception)


def test_compile_refuses_vendor_type_before_writing(tmp_path):
    from deploy.compiler import compile_build
    with pytest.raises(UnsupportedError, match="tf2onnx"):
        compile_build(load_build_config(vendor_yaml(tmp_path, "keras")))
    assert not (tmp_path / "ws").exists()


@pytest.mark.slow
def test_pytorch_without_torch_names_the_extra(tmp_path):
    """torch masked as on an install without the zoo extra: the compile fails at load with the extra."""
    (tmp_path / "model.pt").write_bytes(b"not read: torch is missing first")
    yml = vendor_yaml(tmp_path, "pytorch", "./model.pt")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from deploy.cli import main\n"
            f"main(['compile', {str(yml)!r}])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode != 0
    assert "frontend.type: pytorch needs PyTorch, which is not installed: pip install 'segdeploy[zoo]'" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "ws").exists()
