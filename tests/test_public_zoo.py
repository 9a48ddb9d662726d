"""Public segmentation zoo (catalogue.PUBLIC, deploy.zoo.public): the table, the CLI, and for every
network the ONNX export (matches torch in onnxruntime, symbolic batch) and an fp32 compile through
our compiler that matches onnxruntime. The torch tests need the zoo-public extra."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deploy.catalogue import MODELS, PUBLIC, PUBLIC_NAMES, public
from deploy.errors import DeployError
from test_compiler import write_build

TOL = 1e-4  # max abs difference, relative to the output's largest magnitude when that exceeds 1


def rel_max_abs(ref: np.ndarray, out: np.ndarray) -> float:
    return float(np.abs(ref - out).max()) / max(1.0, float(np.abs(ref).max()))


def test_table_names_and_sizes():
    assert len(PUBLIC_NAMES) == 28 and not set(PUBLIC_NAMES) & set(MODELS)
    assert {"fcn_resnet50", "deeplabv3_mobilenet_v3_large", "unet_resnet34", "fpn_mobilenet_v2",
            "deeplabv3plus_efficientnet-b0", "segformer_mit_b0"} <= set(PUBLIC_NAMES)
    for m in PUBLIC.values():
        m.check_size(m.size)
        m.check_size(m.smallest)
    with pytest.raises(DeployError, match="multiples of 48"):
        public("pspnet_resnet34").check_size(256)
    with pytest.raises(DeployError, match="unknown public model"):
        public("unet_resnet35")


def test_cli_list_needs_no_torch():
    from deploy.cli import cli
    res = CliRunner().invoke(cli, ["zoo", "public", "list"])
    assert res.exit_code == 0, res.output
    assert [line.split("\t")[0] for line in res.output.splitlines()] == list(PUBLIC_NAMES)


@pytest.fixture(scope="module")
def zoo():
    """The export module, or a skip when the zoo-public extra is missing; one torch thread (the
    machine's cores are shared)."""
    torch = pytest.importorskip("torch")
    from deploy.zoo.public import export, libraries
    if not libraries.available():
        pytest.skip(f"needs the zoo-public extra: {libraries.EXTRA}")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield export
    torch.set_num_threads(old)


def export_matches_torch(zoo, name: str, size: int, batch: int) -> None:
    import onnxruntime as ort
    import torch
    from deploy.zoo.public.models import create
    proto = zoo.to_onnx(name, size)
    assert proto.opset_import[0].version == 17
    assert [i.name for i in proto.graph.input] == ["input"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.random.default_rng(1).standard_normal((batch, 3, size, size)).astype(np.float32)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    with torch.no_grad():
        ref = create(name)(torch.from_numpy(x)).numpy()
    assert got[0].shape == (batch, PUBLIC[name].classes, size, size)
    assert rel_max_abs(ref, got[0]) < TOL


@pytest.mark.zoo
@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_export_matches_torch_small(zoo, name):
    """At the smallest size the architecture takes, batch 2 through the symbolic batch."""
    export_matches_torch(zoo, name, PUBLIC[name].smallest, batch=2)


@pytest.mark.zoo
@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_export_matches_torch_full_size(zoo, name):
    export_matches_torch(zoo, name, PUBLIC[name].size, batch=1)


@pytest.mark.zoo
def test_cli_export_writes_the_onnx(zoo, tmp_path):
    import onnx
    from deploy.cli import cli
    out = tmp_path / "lraspp.onnx"
    res = CliRunner().invoke(cli, ["zoo", "public", "export", "lraspp_mobilenet_v3_large", "--size", "64",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["model"] == "lraspp_mobilenet_v3_large" and meta["input_size"] == "64"
    bad = CliRunner().invoke(cli, ["zoo", "public", "export", "pan_resnet34", "--size", "128", "--out", str(out)])
    assert bad.exit_code != 0 and "pan_resnet34 takes input sizes >= 256" in str(bad.exception)


# Networks our compiler does not yet build or match at fp32, with the reason (strict: a fix flips them).
COMPILE_XFAIL: dict[str, str] = {}


def compile_cases() -> list:
    return [pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=COMPILE_XFAIL[name])]
                         if name in COMPILE_XFAIL else []) for name in PUBLIC_NAMES]


@pytest.mark.zoo
@pytest.mark.slow
@pytest.mark.parametrize("name", compile_cases())
def test_compiles_and_matches_onnxruntime(zoo, name, tmp_path: Path):
    """fp32 at the smallest size: our build's output against onnxruntime's on the same ONNX."""
    import onnxruntime as ort
    from deploy.compiler import compile_build
    from deploy.config import load_build_config
    from deploy.runtime import Model
    size = PUBLIC[name].smallest
    proto = zoo.to_onnx(name, size)
    yaml_path = write_build(tmp_path, proto, "net", shape={"input": [1, 3, size, size]})
    prefix = compile_build(load_build_config(yaml_path), progress=False)
    x = np.random.default_rng(2).standard_normal((1, 3, size, size)).astype(np.float32)
    ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    out = Model(prefix).run(x)
    assert rel_max_abs(ref[0], out[0]) < TOL
