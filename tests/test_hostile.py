"""Hostile input, one test per class of issue #14: what a careless or malicious user can feed the
tools (config values, file names, folders, artifacts) must end in a clear DeployError naming the
file and key or path, and must never lose or overwrite data nor give a silently wrong result."""
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.config import load_build_config
from deploy.errors import ConfigError, DeployError
from deploy.tools.evaluate import evaluate
from deploy.tools.run import run
from test_tools_e2e import vdsp_json


def _build_yaml(tmp: Path, name: str, legacy: bool = False) -> Path:
    path = tmp / "b.yaml"
    if legacy:
        path.write_text(f"model: {{name: {json.dumps(name)}, inputs: {{input: [1, 3, 8, 8]}}, checkpoint: ./m.onnx}}\n"
                        "engine: {type: vacc, dtype: fp32}\n")
    else:
        path.write_text(f"name: {json.dumps(name)}\n"
                        "frontend: {type: onnx, checkpoint: ./m.onnx, shape: {input: [1, 3, 8, 8]}}\n"
                        "backend: {type: tvm_vacc, dtype: fp32}\n")
    return path


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".png", np.full((8, 8, 3), value, np.uint8))[1].tobytes())  # any file name
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------- data loss
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("name", [".", "..", "...", ".hidden"])
def test_build_name_cannot_be_the_workspace_or_a_hidden_folder(tmp_path, name, legacy):
    """A name of dots is the workspace (or its parent) once joined to it: a compile would swap the whole
    folder out; a leading dot is the compiler's own temporaries and locks (`.<name>.tmp-*`)."""
    path = _build_yaml(tmp_path, name, legacy)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: (model\.)?name: .*{re.escape(repr(name))}"):
        load_build_config(path)


@pytest.mark.parametrize("names, clash", [
    (("x.png", "x_model.png"), "x_model.png"),     # x's model-size mask is x_model's mask
    (("a.png", "a.jpg"), "a.npz"),                 # same stem
    (("iou_hist.png", "b.png"), "iou_hist.png"),   # the run's own histogram
])
def test_run_refuses_colliding_output_names_before_writing(tmp_path, names, clash):
    images = tmp_path / "images"
    for n in names:
        _png(images / n)
    (tmp_path / "v.json").write_text(json.dumps(vdsp_json()))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    with pytest.raises(DeployError, match=re.escape(clash)) as e:
        run(images, tmp_path / "no_model" / "mod", tmp_path / "v.json", out, progress=False)
    assert "not found" not in str(e.value)  # refused up front, before the model is even looked at
    assert _tree(out) == {"keep.txt": b"earlier results"}


@pytest.mark.parametrize("stems, clash", [(("x", "x_overlay"), "x_overlay.png"),
                                          (("iou_hist", "y"), "iou_hist.png"),
                                          (("d1/z", "d2/z"), "z.png")])
def test_eval_refuses_colliding_drawings_before_writing(tmp_path, stems, clash):
    outs = tmp_path / "outs"
    outs.mkdir()
    lines = []
    for s in stems:
        p = tmp_path / "in" / f"{s}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez(p, input_0=np.zeros((3, 8, 8), np.uint8))
        np.savez(outs / p.name, output_0=np.zeros((1, 1, 8, 8), np.float32))
        lines.append(str(p))
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    (drawn / f"{Path(stems[0]).name}.png").write_bytes(b"an earlier drawing")
    before = _tree(drawn)
    with pytest.raises(DeployError, match=re.escape(clash)):
        evaluate(tmp_path / "list.txt", outs, draw_dir=drawn)
    assert _tree(drawn) == before


# ---------------------------------------------------------------------------- silently wrong
@pytest.fixture(scope="module")
def suites(tmp_path_factory):
    """The tiny segmenter compiled twice from one build file: for this host and for a baseline x86-64
    CPU (same sources, another target and library), plus its vdsp JSON and a 6-image data set."""
    from dataclasses import replace

    from deploy.compiler import compile_build
    from deploy.data.synth import synth_dsb2018
    from test_tools_e2e import compile_tiny, tiny_seg

    root = tmp_path_factory.mktemp("hostile")
    (root / "vdsp.json").write_text(json.dumps(vdsp_json()))
    data = synth_dsb2018(root / "data", n=6, seed=1)
    host = compile_tiny(root, tiny_seg(), "tiny")
    other = compile_build(replace(load_build_config(root / "tiny.yaml"), workspace=root / "ws2"), target="x86-64")
    return {"host": host, "other": other, "vdsp": root / "vdsp.json", "images": data / "images",
            "masks": data / "masks"}


def _other_masks(masks: Path, dest: Path) -> Path:
    shutil.copytree(masks, dest)
    first = sorted(dest.iterdir())[0]
    cv2.imwrite(str(first), 255 - cv2.imread(str(first), cv2.IMREAD_GRAYSCALE))
    return dest


@pytest.mark.parametrize("change, differs", [("mask folder", "masks.path"), ("mask edited", "masks.sha256"),
                                             ("suite", "model.target")])
def test_resume_refuses_any_input_that_changes_the_results(suites, tmp_path, change, differs):
    out = tmp_path / "out"
    masks, prefix = suites["masks"], suites["host"]
    if change == "mask edited":
        masks = shutil.copytree(masks, tmp_path / "masks")
    run(suites["images"], prefix, suites["vdsp"], out, masks, limit=3, progress=False)
    before = (out / "results.csv").read_bytes()
    if change == "mask folder":
        masks = _other_masks(masks, tmp_path / "other_masks")
    elif change == "mask edited":
        _other_masks(suites["masks"], tmp_path / "edited")
        shutil.copy(sorted((tmp_path / "edited").iterdir())[0], masks)
    else:
        prefix = suites["other"]
    with pytest.raises(DeployError, match=rf"--resume: .*{re.escape(differs)}.* differ") as e:
        run(suites["images"], prefix, suites["vdsp"], out, masks, resume=True, progress=False)
    if change == "suite":
        assert "model.library_sha256" in str(e.value)
    assert (out / "results.csv").read_bytes() == before  # nothing mixed in


def _vdsp(tmp: Path, drop=(), **values) -> Path:
    doc = vdsp_json()
    for k in drop:
        del doc["OpConfig"][k]
    doc["OpConfig"].update(values)
    path = tmp / "v.json"
    path.write_text(json.dumps(doc))  # json writes NaN / Infinity literals, as Python's reader accepts
    return path


@pytest.mark.parametrize("edit, key", [
    (dict(drop=("Mean",)), "OpConfig.Mean"), (dict(drop=("Std",)), "OpConfig.Std"),
    (dict(Mean=[0.5, float("nan"), 0.5]), "OpConfig.Mean"), (dict(Std=[0.5, 0.5, float("inf")]), "OpConfig.Std"),
])
def test_vdsp_mean_std_must_be_given_and_finite(tmp_path, edit, key):
    from deploy.config.vdsp import load_vdsp_config
    path = _vdsp(tmp_path, **edit)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: {re.escape(key)}"):
        load_vdsp_config(path)
    assert load_vdsp_config(_vdsp(tmp_path, drop=("Mean", "Std"), NormaType="DIV255")).norma_type == "DIV255"


@pytest.mark.parametrize("prop, value", [("meanr", None), ("stdg", 0x7E00), ("meanb", 0x7C00)])
def test_legacy_vdsp_half_values_must_be_given_and_finite(vendor_dir, tmp_path, prop, value):
    from deploy.config.vdsp import load_vdsp_config
    doc = json.loads((vendor_dir / "unetpp" / "legacy" / "unetzoo-unetpp-vdsp_params.json").read_text())
    items = [c for c in doc["config"] if c["Property"] != prop]
    if value is not None:
        items.append({"Property": prop, "Value": value})  # fp16 NaN / +inf bit patterns
    doc["config"] = items
    (tmp_path / "v.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=rf"{re.escape(str(tmp_path / 'v.json'))}: config.*{prop}"):
        load_vdsp_config(tmp_path / "v.json")


@pytest.mark.parametrize("text, key", [
    ("backend: {type: tvm_vacc, dtype: int8, quantize: {calibrate_mode: percentile, percentile: .nan}}",
     "backend.quantize.percentile"),
    ("backend: {type: tvm_vacc, dtype: fp32, compile: {target: {kind: llvm, opt: -.inf}}}",
     "backend.compile.target.opt"),
    ("backend: {type: tvm_vacc, dtype: fp32}\ndataset: {process_ops: [{type: Normalize, mean: [0.5, .inf, 0.5]}]}",
     "dataset.process_ops[0].mean[1]"),
])
def test_yaml_numbers_must_be_finite_anywhere(tmp_path, text, key):
    path = tmp_path / "b.yaml"
    path.write_text("name: n\nfrontend: {type: onnx, checkpoint: ./m.onnx, shape: {input: [1, 3, 8, 8]}}\n" + text)
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: {re.escape(key)}: .*(nan|inf)"):
        load_build_config(path)


@pytest.mark.parametrize("tool", ["run", "eval"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_threshold_must_be_finite(tmp_path, tool, value):
    from click.testing import CliRunner

    from deploy.cli import cli
    args = (["run", "--image_dir", tmp_path, "-m", tmp_path / "mod", "--vdsp_params", tmp_path / "v.json"]
            if tool == "run" else ["eval", "--input_npz_path", tmp_path / "l.txt", "--out_npz_dir", tmp_path])
    res = CliRunner().invoke(cli, [str(a) for a in args] + ["--threshold", value])
    assert res.exit_code == 2 and "--threshold" in res.output and "finite" in res.output, res.output
    for call in (lambda: run(tmp_path, tmp_path / "mod", tmp_path / "v.json", tmp_path / "o", threshold=float(value)),
                 lambda: evaluate(tmp_path / "l.txt", tmp_path, threshold=float(value))):
        with pytest.raises(DeployError, match="threshold"):
            call()


def test_analyze_never_writes_into_a_suite(tmp_path):
    from click.testing import CliRunner

    from deploy.analysis.cli import analyze_cmd
    from test_quantize import make_cfg, small_net, write_images
    import onnx
    write_images(tmp_path / "images")
    onnx.save(small_net(), tmp_path / "net.onnx")
    cfg = make_cfg(tmp_path, mode="max")
    suite = cfg.artifact_dir
    suite.mkdir(parents=True)
    (suite / "mod.so").write_bytes(b"an int8 build")
    (suite / "mod.json").write_text("{}")
    before = _tree(suite)
    res = CliRunner().invoke(analyze_cmd, [str(cfg.source)])
    assert res.exit_code == 0, res.output
    assert _tree(suite) == before
    report = cfg.workspace / f"{cfg.name}.analysis"
    assert (report / "calibration.json").is_file() and str(report / "calibration.json") in res.output
    res = CliRunner().invoke(analyze_cmd, [str(cfg.source)])
    assert "(reused)" in res.output
    for flag in ("--qdq", "--ort-qdq", "--out-dir"):
        target = suite / "x.onnx" if flag != "--out-dir" else suite
        res = CliRunner().invoke(analyze_cmd, [str(cfg.source), flag, str(target)])
        assert res.exit_code != 0 and "suite" in str(res.exception or res.output), res.output
        assert _tree(suite) == before


def test_unlistable_image_names_are_skipped_and_counted(tmp_path):
    from deploy.data.readers import DataWarning, list_images
    from deploy.tools.image2npz import image2npz
    images = tmp_path / "images"
    for n in ("ok.png", "bad\nname.png", "tab\there.png", ".hidden.png", "._ok.png"):
        _png(images / n)
    with pytest.warns(DataWarning, match=r"4 file\(s\) skipped.*2 hidden.*2 with control characters"):
        assert [p.name for p in list_images(images)] == ["ok.png"]
    with pytest.warns(DataWarning):
        res = image2npz(images, tmp_path / "npz", tmp_path / "list.txt")
    assert res["written"] == 1 and len(res["unlisted"]) == 4 and not res["skipped"]
    lines = (tmp_path / "list.txt").read_text().splitlines()
    assert len(lines) == 1 and Path(lines[0]).is_file()


# ------------------------------------------------------------------ a suite is executable code
@pytest.mark.parametrize("tamper", ["planted library", "appended bytes", "truncated", "no digest"])
def test_the_library_is_checked_against_its_digest_before_loading(suites, tmp_path, tamper):
    """mod.so runs code when loaded: mod.json records its SHA-256 and the runtime compares before dlopen."""
    from deploy.io import sha256_file
    from deploy.runtime import ArtifactError, Model
    suite = shutil.copytree(suites["host"].parent, tmp_path / "suite")
    meta = json.loads((suite / "mod.json").read_text())
    assert meta["library_sha256"] == sha256_file(suite / "mod.so")
    if tamper == "planted library":  # a valid library, but not this suite's
        shutil.copy(suites["other"].parent / "mod.so", suite / "mod.so")
    elif tamper == "appended bytes":
        with open(suite / "mod.so", "ab") as f:
            f.write(b"\0")
    elif tamper == "truncated":  # an interrupted copy: the loader would die with SIGBUS
        (suite / "mod.so").write_bytes((suite / "mod.so").read_bytes()[:4096])
    else:
        del meta["library_sha256"]
        (suite / "mod.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=rf"{re.escape(str(suite / 'mod.so'))}: .*(SHA-256|sha256).*recompile"):
        Model(suite / "mod")


def test_readme_says_a_suite_is_executable_code():
    text = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert "a model suite is executable code" in text.lower() and "only suites you trust" in text


# ---------------------------------------------------------------------------------------- leaks
def test_perf_workers_die_with_their_parent(suites):
    """`deploy perf -p 2` killed with SIGKILL (no cleanup runs) must not leave its workers spinning."""
    import signal
    import subprocess
    import sys

    import psutil
    parent = subprocess.Popen([sys.executable, "-m", "deploy", "perf", "-m", str(suites["host"]), "-p", "2",
                               "--iterations", "100000000", "--warmup", "0", "--max-seconds", "1e9"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers = []
        for _ in range(600):  # until both workers are started (bounded: 600 polls of 0.1 s)
            try:
                workers = [c for c in psutil.Process(parent.pid).children()
                           if any("spawn_main" in a for a in c.cmdline())]
            except psutil.Error:
                workers = []
            if len(workers) == 2 or parent.poll() is not None:
                break
            psutil.wait_procs([psutil.Process(parent.pid)], timeout=0.1)
        assert len(workers) == 2, "perf did not start its two worker processes"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, f"workers still running after their parent was killed: {[p.pid for p in alive]}"
    finally:  # whatever happened, leave nothing running
        if parent.poll() is None:
            parent.kill()
        for w in workers:
            if w.is_running():
                w.kill()


# ------------------------------------------------------------------- tracebacks → clear errors
def _cli_error(capsys, *args) -> str:
    """`deploy ARGS` in this process: it must exit with code 2 and an error line (ours, or click's usage
    error), no traceback."""
    from deploy.cli import main
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: " in err.lower() and "Traceback" not in err, err
    return err


def test_files_that_are_not_utf8_are_named(tmp_path, capsys):
    from deploy.data.readers import DataWarning, list_images
    (tmp_path / "b.yaml").write_bytes(b"name: caf\xe9\nfrontend: {}\n")            # Latin-1, not UTF-8
    assert f"{tmp_path / 'b.yaml'}: not UTF-8" in _cli_error(capsys, "compile", tmp_path / "b.yaml")
    (tmp_path / "v.json").write_bytes(b'{"OpType": "\xff"}')
    assert f"{tmp_path / 'v.json'}: not UTF-8" in _cli_error(
        capsys, "run", "--image_dir", tmp_path, "-m", tmp_path / "mod", "--vdsp_params", tmp_path / "v.json")
    (tmp_path / "list.txt").write_bytes(b"/data/\xff.npz\n")
    assert f"{tmp_path / 'list.txt'}: not UTF-8" in _cli_error(
        capsys, "eval", "--input_npz_path", tmp_path / "list.txt", "--out_npz_dir", tmp_path)
    images = tmp_path / "images"
    _png(images / "ok.png")
    _png(Path(os.fsdecode(bytes(images) + b"/bad\xff.png")))    # a file name that is not UTF-8
    with pytest.warns(DataWarning, match="not valid UTF-8"):
        assert [p.name for p in list_images(images)] == ["ok.png"]


def _disk_full(monkeypatch) -> None:
    """Every atomic write lands on /dev/full, whose writes fail with ENOSPC (a real one, from the kernel)."""
    import deploy.io
    monkeypatch.setattr(deploy.io, "_create_temp", lambda path: (os.open("/dev/full", os.O_WRONLY),
                                                                 path.with_name(f".{path.name}.full.tmp")))


def test_disk_full_is_a_clear_error(suites, tmp_path, monkeypatch, capsys):
    _disk_full(monkeypatch)
    err = _cli_error(capsys, "image2npz", "--dataset_path", suites["images"], "--target_path", tmp_path / "npz",
                     "--text_path", tmp_path / "list.txt")
    assert str(tmp_path / "npz") in err and "No space left on device" in err
    err = _cli_error(capsys, "run", "--image_dir", suites["images"], "-m", suites["host"], "--vdsp_params",
                     suites["vdsp"], "--save_dir", tmp_path / "out", "--no-progress")
    assert str(tmp_path / "out") in err and "No space left on device" in err


def test_sizes_that_cannot_fit_in_memory_are_refused_up_front(suites, tmp_path, capsys):
    """Sizes no machine can hold fail before any work, naming the option, not deep in numpy/OpenCV/TVM."""
    model = ["-m", suites["host"]]
    assert "-b 1000000000" in _cli_error(capsys, "perf", *model, "-b", "1000000000", "--iterations", "1")
    assert "needs about" in _cli_error(capsys, "perf", *model, "-s", "[3,2000000,2000000]", "--iterations", "1")
    assert "--batch 1000000000" in _cli_error(capsys, "run", "--image_dir", suites["images"], *model,
                                              "--vdsp_params", suites["vdsp"], "--batch", "1000000000",
                                              "--save_dir", tmp_path / "o")
    huge = _vdsp(tmp_path, OimageWidth=3_000_000, OimageHeight=3_000_000)
    assert "3000000x3000000" in _cli_error(capsys, "run", "--image_dir", suites["images"], *model,
                                           "--vdsp_params", huge, "--save_dir", tmp_path / "o")


def test_histogram_bins_that_cannot_fit_are_refused_before_calibrating(tmp_path, capsys):
    import onnx

    from test_quantize import make_cfg, small_net, write_images
    write_images(tmp_path / "images", n=2)
    onnx.save(small_net(), tmp_path / "net.onnx")
    cfg = make_cfg(tmp_path, mode="percentile", extra=", num_bins: 1000000000000")
    assert "backend.quantize.num_bins 1000000000000" in _cli_error(capsys, "analyze", cfg.source)


def test_option_values_are_checked_before_the_long_work(suites, tmp_path, capsys, monkeypatch):
    """A bad --percentiles or --json, an unwritable workspace or a held compile lock is refused before
    the benchmark or the build runs (not after it, with the work lost)."""
    from deploy.compiler import artifact
    from deploy.compiler import compile as compile_module
    model = ["-m", suites["host"], "--iterations", "1", "--warmup", "0"]
    assert "--percentiles" in _cli_error(capsys, "perf", *model, "--percentiles", "[50,150]")
    (tmp_path / "afile").write_text("")
    assert "--json" in _cli_error(capsys, "perf", *model, "--json", tmp_path)  # a folder: click says so
    bad = tmp_path / "afile" / "r.json"
    assert f"--json {bad}" in _cli_error(capsys, "perf", *model, "--json", bad)

    def no_build(*a, **k):
        raise AssertionError("the build started")
    monkeypatch.setattr(compile_module, "load_source", no_build)
    yaml = _build_yaml(tmp_path, "net")
    with open(yaml, "a") as f:
        f.write(f"workspace: {{path: {tmp_path / 'afile'}}}\n")
    assert f"{yaml}: workspace: {tmp_path}/afile" in _cli_error(capsys, "compile", yaml)
    yaml = _build_yaml(tmp_path, "net")
    with artifact.staging(tmp_path / "workspace" / "net"):  # another compile of the same name, writing
        assert "another compile of this model is running" in _cli_error(capsys, "compile", yaml)


@pytest.mark.parametrize("case", ["run: save_dir under a file", "run: save_dir on a read-only file system",
                                  "image2npz: text_path is a folder", "image2npz: target under a file",
                                  "image2npz: text_path on a read-only file system",
                                  "eval: draw_dir under a file", "compile: workspace on a read-only file system"])
def test_write_errors_name_the_file_and_what_to_do(suites, tmp_path, capsys, case):
    """EISDIR, ENOTDIR, EROFS/EPERM (what root meets; EACCES for others) from any tool: one line naming
    the file and the remedy, exit 2 (deploy.io.os_error, applied by the CLI)."""
    afile = tmp_path / "afile"
    afile.write_text("in the way")
    run = ["run", "--image_dir", suites["images"], "-m", suites["host"], "--vdsp_params", suites["vdsp"],
           "--no-progress", "--save_dir"]
    ro = Path("/proc/segdeploy-hostile")  # no file can be created in /proc, not even by root
    tool, what = case.split(": ")
    if tool == "run":
        target = afile / "out" if "under" in what else ro
        err = _cli_error(capsys, *run, target)
    elif tool == "image2npz":
        (tmp_path / "adir").mkdir()
        target = afile / "npz" if "text" not in what else tmp_path / "adir" if "folder" in what else ro / "l.txt"
        err = _cli_error(capsys, "image2npz", "--dataset_path", suites["images"], "--target_path",
                         tmp_path / "npz" if "text" in what else target, "--text_path",
                         target if "text" in what else tmp_path / "l.txt")
    elif tool == "eval":
        lst = tmp_path / "l.txt"
        lst.write_text(f"{tmp_path / 'x.npz'}\n")
        target = afile / "d"
        err = _cli_error(capsys, "eval", "--input_npz_path", lst, "--out_npz_dir", tmp_path, "--draw_dir", target)
    else:
        target = ro / "ws"
        yaml = _build_yaml(tmp_path, "net")
        with open(yaml, "a") as f:
            f.write(f"workspace: {{path: {target}}}\n")
        err = _cli_error(capsys, "compile", yaml)
    assert f"{target}:" in err or f"{target.parent}:" in err or f"{target} " in err, err  # not a temporary
    remedies = "a folder|a part of the path|no such|not permitted|that file"
    assert re.search(rf"cannot (write|use) it: .*; ({remedies})", err), err
    assert len(err.strip().splitlines()) == 1, err


def _bomb_npz(path: Path, shape: tuple) -> Path:
    """An npz that declares a `shape` float32 array and holds almost nothing: loading it allocates the
    whole array first (what a hand-made or damaged output file can ask of numpy)."""
    import zipfile
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    with zipfile.ZipFile(path, "w") as z, z.open("output_0.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(64))
    return path


def test_out_of_memory_is_one_line(tmp_path, capsys):
    lst = tmp_path / "l.txt"
    lst.write_text(f"{tmp_path / 'in' / 'x.npz'}\n")
    (tmp_path / "outs").mkdir()
    _bomb_npz(tmp_path / "outs" / "x.npz", (1, 1, 2**21, 2**21))  # 16 TiB
    err = _cli_error(capsys, "eval", "--input_npz_path", lst, "--out_npz_dir", tmp_path / "outs",
                     "--draw_dir", tmp_path / "d")
    assert "out of memory" in err and "reduce --batch" in err and len(err.strip().splitlines()) == 1, err


def test_run_on_an_empty_folder_says_no_images(suites, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    err = _cli_error(capsys, "run", "--image_dir", tmp_path / "empty", "-m", suites["host"], "--vdsp_params",
                     suites["vdsp"], "--save_dir", tmp_path / "out")
    assert "no images (file names ending with .png, .jpg" in err and f"in {tmp_path / 'empty'}" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where, text, key", [
    ("yaml", "backend: {type: tvm_vacc, dtype: fp32, compile: {batch_sizes: [100000000000000000000]}}",
     "backend.compile.batch_sizes[0]"),
    ("yaml", "backend: {type: tvm_vacc, dtype: fp32}\ndataset: {seed: -100000000000000000000}", "dataset.seed"),
    ("vdsp", 10**30, "OpConfig.OimageWidth"),
])
def test_integers_too_large_for_any_setting_are_refused_with_the_key(tmp_path, where, text, key):
    from deploy.config.vdsp import load_vdsp_config
    if where == "yaml":
        path = tmp_path / "b.yaml"
        path.write_text("name: n\nfrontend: {type: onnx, checkpoint: ./m.onnx, shape: {input: [1, 3, 8, 8]}}\n" + text)
        load = load_build_config
    else:
        path, load = _vdsp(tmp_path, OimageWidth=text), load_vdsp_config
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: {re.escape(key)}: .* too large"):
        load(path)


def test_a_yaml_alias_bomb_is_read_without_expanding(tmp_path):
    """Ten levels of nine aliases each: 9**10 values if walked naively; each object is checked once."""
    import time
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: n\n")
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: frontend: required"):
        load_build_config(path)
    assert time.monotonic() - t0 < 5


def test_paths_that_are_not_utf8_are_refused_before_the_build(suites, tmp_path):
    """TVM writes and loads suites by UTF-8 paths: a Latin-1 folder name failed after the whole build."""
    from deploy.runtime import ArtifactError, Model
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    folder.mkdir()
    yaml = _build_yaml(folder, "net")
    with pytest.raises(ConfigError, match=rf"b.yaml: workspace.path: .*caf\\xe9.*not valid UTF-8"):
        load_build_config(yaml)
    suite = shutil.copytree(suites["host"].parent, folder / "suite")
    with pytest.raises(ArtifactError, match=r"caf\\xe9/suite/mod: the path is not valid UTF-8"):
        Model(suite / "mod")


def test_perf_options_are_checked_in_the_parent_before_workers(suites, capsys):
    """-p N: a wrong -s, too many instances or too many iterations fail in the parent, at once, with the
    option (not as 'a worker process failed' after N interpreters started)."""
    model = ["-m", suites["host"], "-p", "2"]
    err = _cli_error(capsys, "perf", *model, "-s", "[[3,8,8],[1,2]]")
    assert "-s gives 2 input shape(s)" in err and "worker" not in err, err
    assert "at most 256" in _cli_error(capsys, "perf", *model, "-i", "100000")
    err = _cli_error(capsys, "perf", "-m", suites["host"], "--iterations", "1000000000", "--warmup", "1")
    assert "--iterations 1000000000 would take about" in err and "--max-seconds 3600" in err, err
