"""frontend.type: pytorch — TorchScript and torch.export files compile from the build YAML, agree
with the ONNX route, keep the converted ONNX and both hashes in the suite; without torch the
compile says which extra to install."""
from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
nn = torch.nn

from deploy.compiler import compile_build  # noqa: E402
from deploy.config import load_build_config  # noqa: E402
from deploy.errors import ConfigError, DeployError  # noqa: E402
from deploy.runtime import Model  # noqa: E402
from deploy.zoo import models as M  # noqa: E402

pytestmark = pytest.mark.zoo
REPO = Path(__file__).resolve().parents[1]
SIZE = 32


class FCN(nn.Module):
    """Dilated convs + BatchNorm + bilinear upsampling (DeepLab/FCN style), two inputs' worth of heads."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, 1, 2, dilation=2), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        y = nn.functional.interpolate(self.head(self.body(x)), scale_factor=2, mode="bilinear", align_corners=False)
        return y.softmax(1)


class MobileSeg(nn.Module):
    """Depthwise-separable encoder with Hardswish and a global-pool attention branch, flatten by batch."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.Conv2d(8, 16, 1), nn.ReLU6())
        self.att = nn.Linear(16, 16)
        self.out = nn.Conv2d(16, 1, 1)

    def forward(self, x):
        f = self.dw(self.stem(x))
        a = torch.sigmoid(self.att(f.mean((2, 3)).view(f.size(0), -1)))
        y = self.out(f * a[:, :, None, None])
        return torch.sigmoid(nn.functional.interpolate(y, scale_factor=2, mode="nearest"))


class EncDec(nn.Module):
    """Encoder-decoder with a ConvTranspose, a skip concat and two heads returned as a list."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.LeakyReLU(0.1))
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, 2)
        self.head = nn.Conv2d(16, 2, 1)
        self.aux = nn.Conv2d(16, 1, 1)

    def forward(self, x):
        e = self.enc(x)
        d = self.down(e)
        return [self.aux(d), self.head(torch.cat([e, self.up(d)], 1))]


class Heads(nn.Module):
    """torchvision's segmentation convention: a dict with the prediction "out" and a training head "aux"."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU())
        self.out = nn.Conv2d(8, 2, 1)
        self.aux = nn.Conv2d(8, 1, 3, 1, 1)

    def forward(self, x):
        f = self.body(x)
        return {"aux": self.aux(f), "out": self.out(f)}


NETS = {"fcn": FCN, "mobileseg": MobileSeg, "encdec": EncDec, "heads": Heads}


def make_net(name: str) -> nn.Module:
    torch.manual_seed(0)
    net = NETS[name]() if name in NETS else M.create(name, 0.125)
    for m in net.modules():  # non-trivial BatchNorm statistics, so folding them is tested
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def save_torch(net: nn.Module, path: Path, fmt: str, size: int = SIZE) -> Path:
    x = torch.randn(1, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            torch.jit.trace(net, x, strict=False).save(str(path))  # strict=False: a dict result
        else:
            n = torch.export.Dim("N", min=1, max=64)
            torch.export.save(torch.export.export(net, (x.repeat(2, 1, 1, 1),), dynamic_shapes=({0: n},)), str(path))
    return path


def save_onnx(net: nn.Module, path: Path) -> Path:
    """The ONNX route a user takes today (as deploy.zoo.export does)."""
    x = torch.randn(1, 3, SIZE, SIZE)
    n_out = len(M.as_list(net(x)))
    outs = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17, input_names=["input"], output_names=outs,
                          dynamic_axes={k: {0: "N"} for k in ["input", *outs]})
    path.write_bytes(buf.getvalue())
    return path


def write_yaml(tmp: Path, name: str, kind: str, checkpoint: Path, dtype: str = "fp32", dataset: Path | None = None,
               output: str | int | None = None, size: int = SIZE):
    frontend = {"type": kind, "checkpoint": str(checkpoint), "shape": {"input": [1, 3, size, size]}}
    if output is not None:
        frontend["output"] = output
    doc = {"name": name, "frontend": frontend,
           "backend": {"type": "tvm_vacc", "dtype": dtype},
           "dataset": {"type": "tvm", "path": str(dataset or tmp / "images"),
                       "sampler": {"suffix": "png", "get_data_num": 4},
                       "process_ops": [{"type": "DecodeImage"}, {"type": "Resize", "size": [size, size]},
                                       {"type": "Normalize", "mean": [0.5] * 3, "std": [0.25] * 3},
                                       {"type": "ToTensor"}]},
           "workspace": {"path": str(tmp / "ws")}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_images(folder: Path, n: int, size: int) -> Path:
    """`n` random PNGs (calibration images for int8 builds)."""
    import cv2
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return folder


def batch(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def onnx_suites(tmp_path_factory):
    """name → (prefix, torch outputs on batch()) of the ONNX route, compiled once per net."""
    tmp = tmp_path_factory.mktemp("onnx_route")
    cache = {}

    def get(name):
        if name not in cache:
            net = make_net(name)
            yml = write_yaml(tmp, f"{name}_onnx", "onnx", save_onnx(net, tmp / f"{name}.onnx"))
            with torch.no_grad():
                ref = [t.numpy() for t in M.as_list(net(torch.from_numpy(batch())))]
            cache[name] = (compile_build(load_build_config(yml)), ref)
        return cache[name]
    return get


def compile_torch(tmp: Path, name: str, fmt: str, dtype: str = "fp32", dataset: Path | None = None,
                  output: str | int | None = None) -> Path:
    ckpt = save_torch(make_net(name), tmp / f"{name}.{'pt' if fmt == 'torchscript' else 'pt2'}", fmt)
    return compile_build(load_build_config(write_yaml(tmp, f"{name}_{fmt.replace('.', '')}", "pytorch", ckpt,
                                                      dtype, dataset, output)))


@pytest.mark.parametrize("fmt", ["torchscript", "torch.export"])
@pytest.mark.parametrize("name", ["fcn", "mobileseg", "encdec"])
def test_pytorch_matches_onnx_route(name, fmt, tmp_path, onnx_suites):
    onnx_prefix, ref = onnx_suites(name)
    prefix = compile_torch(tmp_path, name, fmt)
    x = batch()
    got, want = Model(prefix).run(x), Model(onnx_prefix).run(x)
    assert max_diff(got, want) < 1e-5
    assert max_diff(got, ref) < 1e-4  # and both are the network torch runs
    assert [o.shape[0] for o in got] == [3] * len(got)  # the batch stays dynamic

    meta = json.loads(prefix.with_name("mod.json").read_text())
    kept = prefix.with_name("mod.source.onnx")
    ckpt = Path(meta["sources"]["pytorch"]["path"])
    assert meta["sources"]["pytorch"]["sha256"] == sha256(ckpt)
    assert meta["sources"]["pytorch"]["format"] == fmt
    assert meta["sources"]["pytorch"]["torch"] == torch.__version__
    assert meta["sources"]["onnx"] == {"path": str(kept), "sha256": sha256(kept)}
    assert meta["batch"]["symbolic"] and meta["inputs"][0]["shape"] == [None, 3, SIZE, SIZE]
    log = prefix.with_name("compile.log").read_text()
    assert "pytorch: " in log and str(ckpt) in log


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unet", "unetpp", "r2u_net", "unet3p", "unet3p_ds"])
def test_seed_models_reduced_width(name, tmp_path, onnx_suites):
    onnx_prefix, _ = onnx_suites(name)
    for fmt in ("torchscript", "torch.export"):
        prefix = compile_torch(tmp_path, name, fmt)
        assert max_diff(Model(prefix).run(batch()), Model(onnx_prefix).run(batch())) < 1e-5, fmt


@pytest.mark.slow
def test_int8_matches_onnx_route(tmp_path):
    """int8 calibrates the converted ONNX: the same scales, the same integer model as the ONNX route."""
    images = write_images(tmp_path / "images", 4, SIZE)
    net = make_net("fcn")
    onnx_prefix = compile_build(load_build_config(
        write_yaml(tmp_path, "fcn_onnx", "onnx", save_onnx(net, tmp_path / "fcn.onnx"), "int8", images)))
    prefix = compile_torch(tmp_path, "fcn", "torchscript", "int8", images)
    assert max_diff(Model(prefix).run(batch()), Model(onnx_prefix).run(batch())) < 1e-5
    meta = json.loads(prefix.with_name("mod.json").read_text())
    assert meta["quantization"]["quantized"] and prefix.with_name("mod.qdq.onnx").is_file()


@pytest.mark.parametrize("name, fmt, output, key", [
    ("heads", "torchscript", None, "out"),       # a dict deploys its "out" by default
    ("heads", "torch.export", "aux", "aux"),     # frontend.output: a dict key
    ("heads", "torchscript", 0, "aux"),          # … or an index into the dict's entries
    ("encdec", "torch.export", -1, 1)])          # … or into a list, from the end
def test_output_key_chooses_what_is_deployed(name, fmt, output, key, tmp_path):
    prefix = compile_torch(tmp_path, name, fmt, output=output)
    with torch.no_grad():
        want = make_net(name)(torch.from_numpy(batch()))[key].numpy()
    got = Model(prefix).run(batch())
    assert len(got) == 1 and max_diff(got, [want]) < 1e-4
    meta = json.loads(prefix.with_name("mod.json").read_text())
    assert [o["name"] for o in meta["outputs"]] == ["output"] and meta["main_output"] == "output"
    assert meta["sources"]["pytorch"]["outputs"] == {"output": key}
    assert meta["sources"]["pytorch"]["returns"] == ("dict" if name == "heads" else "tuple")


@pytest.mark.parametrize("name, kind, output, error", [
    ("heads", "pytorch", "logits", r"frontend.output: 'logits' is not a result of the model: it returns a dict; "
                                   r"accepted: 'aux', 'out'"),
    ("heads", "pytorch", 2, r"frontend.output: index 2 is out of range: the model returns a dict of 2 "
                            r"\('aux', 'out'\)"),
    ("encdec", "pytorch", "out", r"frontend.output: 'out' is not a result .* tuple; accepted: an index 0..1"),
    ("fcn", "pytorch", 0, r"frontend.output: 0: the model returns one tensor"),
    ("fcn", "onnx", "out", r"frontend.output: 'out': chooses the result of a PyTorch model's forward"),
    ("fcn", "pytorch", True, r"frontend.output: expected a string or an integer, got a boolean True")])
def test_bad_output_key(name, kind, output, error, tmp_path):
    """Each names the build file and the key, and nothing is written."""
    net = make_net(name)
    ckpt = save_onnx(net, tmp_path / "m.onnx") if kind == "onnx" else save_torch(net, tmp_path / "m.pt", "torchscript")
    yml = write_yaml(tmp_path, "m", kind, ckpt, output=output)
    with pytest.raises(ConfigError, match=re.escape(str(yml)) + ": " + error):
        compile_build(load_build_config(yml))
    assert not (tmp_path / "ws").exists()


def test_bad_pytorch_files(tmp_path):
    ws = tmp_path / "ws"
    state = tmp_path / "weights.pt"
    torch.save(make_net("fcn").state_dict(), state)
    with pytest.raises(ConfigError, match=r"not a TorchScript file .*state dict"):
        compile_build(load_build_config(write_yaml(tmp_path, "a", "pytorch", state)))
    with pytest.raises(ConfigError, match=r"PyTorch file not found"):
        compile_build(load_build_config(write_yaml(tmp_path, "b", "pytorch", tmp_path / "missing.pt")))
    wrong = save_torch(make_net("fcn"), tmp_path / "fcn.pt", "torchscript")
    yml = write_yaml(tmp_path, "c", "pytorch", wrong)
    yml.write_text(yml.read_text().replace("- 3\n", "- 4\n", 1))  # 4 channels into a 3-channel conv
    with pytest.raises(DeployError, match=r"fcn.pt \(torchscript, frontend.checkpoint in .*c.yaml\): the model "
                                          r"does not run at frontend.shape \[\[1, 4, 32, 32\]\]: RuntimeError: "
                                          r"Given groups=1, weight of size \[8, 3, 3, 3\], expected input"):
        compile_build(load_build_config(yml))
    assert not ws.exists()  # nothing written before the build succeeds


class BatchIndexed(nn.Module):
    """Each sample scaled by its index in the batch: a size the program passes to arange as an int."""

    def forward(self, x):
        return x * (torch.arange(x.shape[0], dtype=x.dtype).view(-1, 1, 1, 1) + 1)


def test_batch_the_conversion_would_bake_in_is_refused(tmp_path):
    """Traced plainly, a torch.export program's `view(sym_size, -1)` becomes `Reshape [1, -1]`: a graph
    that runs at other batches with wrong results. The conversion routes those sizes through the
    tracer; the batch check catches what would still be baked, and sizes the tracer cannot carry
    (arange's) fail the export plainly."""
    from deploy.frontend import pytorch
    path = save_torch(make_net("mobileseg"), tmp_path / "m.pt2", "torch.export")
    program = torch.export.load(str(path)).module()
    shapes = {"input": (1, 3, SIZE, SIZE)}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = pytorch.Outputs.of(torch, program(*pytorch._inputs(torch, shapes, 0)), None, tmp_path / "y.yaml")
        plain = torch.jit.trace(pytorch._flat(torch, program, outs), pytorch._inputs(torch, shapes, 0),
                                check_trace=False)
        torch.onnx.export(plain, pytorch._inputs(torch, shapes, 0), buf, dynamo=False, input_names=["input"],
                          dynamic_axes={"input": {0: "N"}})
    with pytest.raises(DeployError, match=r"does not follow the batch \(batch 2 vs torch: .*Gemm"):
        pytorch._check_batch(torch, program, buf.getvalue(), shapes, "m.pt2", outs)
    pytorch.to_onnx(path, shapes, yaml=tmp_path / "y.yaml")  # the conversion itself passes the check

    n = torch.export.Dim("N", min=1, max=64)
    ep = torch.export.export(BatchIndexed(), (torch.randn(2, 3, SIZE, SIZE),), dynamic_shapes=({0: n},))
    torch.export.save(ep, str(tmp_path / "indexed.pt2"))
    with pytest.raises(DeployError, match=r"torch could not export the torch.export model .*SymInts"):
        compile_build(load_build_config(write_yaml(tmp_path, "indexed", "pytorch", tmp_path / "indexed.pt2")))
    assert not (tmp_path / "ws").exists()


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.mark.slow
def test_cli_compile_in_a_fresh_process(tmp_path):
    """The CLI imports TVM (with torch masked) before the load stage imports torch: both work."""
    ckpt = save_torch(make_net("encdec"), tmp_path / "encdec.pt2", "torch.export")
    yml = write_yaml(tmp_path, "encdec", "pytorch", ckpt)
    r = _fresh(f"from deploy.cli import main; main(['compile', {str(yml)!r}])")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "ws" / "encdec" / "mod.so").is_file()
    r = _fresh(f"from deploy.runtime import Model; import sys; m = Model({str(tmp_path / 'ws' / 'encdec' / 'mod')!r}); "
               "import numpy as np; m.run(np.zeros((2, 3, 32, 32), np.float32)); "
               "print('torch loaded:', 'torch' in sys.modules and sys.modules['torch'] is not None)")
    assert r.returncode == 0 and "torch loaded: False" in r.stdout, r.stderr[-3000:]
