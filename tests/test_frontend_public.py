"""frontend.type: pytorch on public networks (deploy.zoo.public: torchvision and smp, random
weights): each saved as a user saves it — torchvision's dict result {"out": …} as it is — as
TorchScript and as a torch.export program, compiled from pytorch YAMLs and compared with the suite
the ONNX route (`deploy zoo public export`, then frontend.type: onnx) builds. Needs the zoo-public
extra (CI has none: the module skips)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deploy.compiler import compile_build  # noqa: E402
from deploy.config import load_build_config  # noqa: E402
from deploy.runtime import Model  # noqa: E402
from deploy.zoo.public import libraries  # noqa: E402
from test_frontend_torch import max_diff, save_torch, write_images, write_yaml  # noqa: E402

if not libraries.available():  # not pytest.importorskip: torchvision needs libraries' import workaround
    pytest.skip(f"needs the zoo-public extra: {libraries.EXTRA}", allow_module_level=True)

pytestmark = [pytest.mark.zoo, pytest.mark.slow]
SIZE = 64  # the smallest input they take
# two torchvision nets (dict results, dilated ResNet / MobileNetV3 with Hardswish and SE) and two smp
# ones (ResNet encoder-decoder, MobileNetV2 pyramid); ~50 s a compile on a shared 2-core machine
NETS = ["fcn_resnet50", "lraspp_mobilenet_v3_large", "unet_resnet34", "fpn_mobilenet_v2"]


@pytest.fixture(scope="module")
def zoo():
    """deploy.zoo.public's export and models, on one torch thread (the machine's cores are shared)."""
    from deploy.zoo.public import export, models
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield export, models
    torch.set_num_threads(old)


def user_net(models, name: str) -> torch.nn.Module:
    """The network as its library returns it: torchvision's dict result unwrapped (models.MainOutput
    takes "out" for the ONNX export; the pytorch frontend must find it by itself)."""
    net = models.create(name)
    return net.net if isinstance(net, models.MainOutput) else net


def batch(n: int = 2) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def compile_routes(zoo, name: str, tmp: Path, dtype: str = "fp32", formats=("torchscript", "torch.export")):
    """(ONNX-route prefix, {format: pytorch-route prefix}) for `name` at `dtype`."""
    export, models = zoo
    images = write_images(tmp / "images", 4, SIZE) if dtype == "int8" else None
    onnx_path = export.export_onnx(name, tmp / f"{name}.onnx", SIZE)
    onnx_prefix = compile_build(load_build_config(
        write_yaml(tmp, f"{name}_onnx", "onnx", onnx_path, dtype, images, size=SIZE)), progress=False)
    net = user_net(models, name)
    prefixes = {}
    for fmt in formats:
        ckpt = save_torch(net, tmp / f"{name}.{'pt' if fmt == 'torchscript' else 'pt2'}", fmt, SIZE)
        yml = write_yaml(tmp, f"{name}_{fmt.replace('.', '')}", "pytorch", ckpt, dtype, images, size=SIZE)
        prefixes[fmt] = compile_build(load_build_config(yml), progress=False)
    return onnx_prefix, prefixes


@pytest.mark.parametrize("name", NETS)
def test_fp32_matches_onnx_route(zoo, name, tmp_path):
    onnx_prefix, prefixes = compile_routes(zoo, name, tmp_path)
    want = Model(onnx_prefix).run(batch())
    with torch.no_grad():
        ref = user_net(zoo[1], name)(torch.from_numpy(batch()))
    ref = (ref["out"] if isinstance(ref, dict) else ref).numpy()
    for fmt, prefix in prefixes.items():
        got = Model(prefix).run(batch())
        assert max_diff(got, want) < 1e-5, fmt
        assert float(np.abs(got[0] - ref).max()) / max(1.0, float(np.abs(ref).max())) < 1e-4, fmt
        meta = json.loads(prefix.with_name("mod.json").read_text())
        assert meta["sources"]["pytorch"]["format"] == fmt and meta["batch"]["symbolic"]
        returns = "dict" if name in ("fcn_resnet50", "lraspp_mobilenet_v3_large") else "tensor"
        assert meta["sources"]["pytorch"]["returns"] == returns
        assert meta["sources"]["pytorch"]["outputs"] == {"output": "out" if returns == "dict" else None}


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
def test_reduced_precision_matches_onnx_route(zoo, dtype, tmp_path):
    """One net per dtype, from TorchScript: the converted graph is the exported one, so fp16 casts and
    int8 calibration (on the converted ONNX) give the ONNX route's suite."""
    onnx_prefix, prefixes = compile_routes(zoo, "lraspp_mobilenet_v3_large", tmp_path, dtype, ("torchscript",))
    got, want = Model(prefixes["torchscript"]).run(batch()), Model(onnx_prefix).run(batch())
    assert max_diff(got, want) < 1e-5
    if dtype == "int8":
        meta = json.loads(prefixes["torchscript"].with_name("mod.json").read_text())
        assert meta["quantization"]["quantized"]
