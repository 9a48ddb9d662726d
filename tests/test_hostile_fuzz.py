"""Hostile input, property style (issue #14): seeded random bytes, truncations and extreme numbers fed to
every loader (build YAML, vdsp JSON, mod.json, npz, images) and to the CLIs. Every loader either accepts
its input or raises a DeployError naming the file; every CLI call ends with exit code 0 or 2 and never a
traceback; a refused call leaves the output and workspace folders as they were.

Each property runs a fixed number of seeded cases (no case can hang: sizes are refused before any work),
so the module runs in well under a minute once its one tiny suite is compiled."""
import json
import random
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.errors import DeployError
from test_hostile import _tree
from test_tools_e2e import vdsp_json

EXTREMES = [0, -1, 2**31, 2**63, 10**30, -(10**30), 1e308, -1e-308, "x", None, [], {}, True, 1.5]
CASES = 12  # per property and input


def _mutations(rng: random.Random, text: bytes) -> list[bytes]:
    """Random bytes, random truncations and random byte flips of `text`."""
    out = [rng.randbytes(rng.randint(0, 400)) for _ in range(3)]
    out += [text[:rng.randint(0, len(text) - 1)] for _ in range(CASES)]
    for _ in range(CASES):
        b = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    return out


def _leaves(doc, path=()):
    """Every (key path, value) of a parsed JSON document whose value is a scalar."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, path + (i,))
    else:
        yield path, doc


def _set(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def _extreme_docs(rng: random.Random, doc: dict) -> list[tuple[str, dict]]:
    """Copies of `doc` with one scalar replaced by an extreme value: (dotted key, copy)."""
    leaves = list(_leaves(doc))
    out = []
    for _ in range(2 * CASES):
        path, _ = rng.choice(leaves)
        copy = json.loads(json.dumps(doc))
        _set(copy, path, rng.choice(EXTREMES))
        out.append((".".join(map(str, path)), copy))
    return out


def _accepts_or_names(load, path: Path) -> None:
    """`load(path)` returns, or raises a DeployError whose message names the file."""
    try:
        load(path)
    except DeployError as e:
        assert str(path) in str(e) or path.name in str(e), f"{e!r} does not name {path}"


def _cli(capsys, *args) -> tuple[int, str]:
    """`deploy ARGS` in this process: exit code 0 or 2 (usage and user errors), never a traceback."""
    from deploy.cli import main
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, (code, err)
    if code == 2:
        assert "error" in err.lower(), err
    return code, err


# --------------------------------------------------------------------------------------------- config files
BUILD = ("name: n\nfrontend: {type: onnx, checkpoint: ./m.onnx, shape: {input: [1, 3, 8, 8]}}\n"
         "backend: {type: tvm_vacc, dtype: int8, compile: {batch_sizes: [1, 4]},\n"
         "          quantize: {calibrate_mode: percentile, percentile: 99.9, num_bins: 2048}}\n"
         "dataset: {path: ./images, get_data_num: 2, process_ops: [{type: DecodeImage}, {type: Resize, size: [8, 8]},\n"
         "          {type: Normalize, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}]}\n"
         "workspace: {path: ./ws}\n").encode()


def test_build_yaml_loader_accepts_or_names_the_file(tmp_path):
    from deploy.config import load_build_config
    rng = random.Random(14)
    path = tmp_path / "b.yaml"
    for data in _mutations(rng, BUILD):
        path.write_bytes(data)
        _accepts_or_names(load_build_config, path)
    import yaml
    for key, doc in _extreme_docs(rng, yaml.safe_load(BUILD)):
        path.write_text(json.dumps(doc))  # JSON is YAML
        _accepts_or_names(load_build_config, path)


def test_vdsp_loader_and_preprocessor_accept_or_name_the_file(tmp_path):
    from deploy.config.vdsp import load_vdsp_config
    from deploy.preprocess import Preprocessor
    rng = random.Random(15)
    path = tmp_path / "v.json"
    text = json.dumps(vdsp_json()).encode()
    cases = [(None, d) for d in _mutations(rng, text)]
    cases += [(key, json.dumps(doc).encode()) for key, doc in _extreme_docs(rng, vdsp_json())]
    for key, data in cases:
        path.write_bytes(data)
        try:
            Preprocessor.from_vdsp(load_vdsp_config(path))
        except DeployError as e:
            assert str(path) in str(e) or "preprocessing" in str(e), f"{e!r} ({key})"


def test_compile_cli_refuses_any_damaged_build_file_with_exit_2(tmp_path, capsys):
    """The CLI on damaged build files (the ONNX is absent, so nothing may build): exit 2, the workspace
    folder (with an earlier suite in it) untouched."""
    ws = tmp_path / "ws"
    (ws / "old").mkdir(parents=True)
    (ws / "old" / "mod.json").write_text("an earlier suite")
    before = _tree(ws)
    rng = random.Random(16)
    path = tmp_path / "b.yaml"
    for data in _mutations(rng, BUILD)[:CASES]:
        path.write_bytes(data)
        code, err = _cli(capsys, "compile", path)
        assert code == 2, err
        assert _tree(ws) == before


# ------------------------------------------------------------------------------------------ compiled suites
@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from deploy.data.synth import synth_dsb2018
    from test_tools_e2e import compile_tiny, tiny_seg
    root = tmp_path_factory.mktemp("fuzz")
    (root / "vdsp.json").write_text(json.dumps(vdsp_json()))
    data = synth_dsb2018(root / "data", n=3, seed=2)
    return {"prefix": compile_tiny(root, tiny_seg(), "tiny"), "vdsp": root / "vdsp.json",
            "images": data / "images", "masks": data / "masks"}


def test_model_description_damage_is_refused_before_loading(suite, tmp_path):
    """mod.json truncated, flipped, random or with one field set to an extreme value: describe_suite
    accepts it (then the model loads) or raises an ArtifactError naming mod.json."""
    from deploy.runtime import ArtifactError
    from deploy.runtime.model import describe_suite
    rng = random.Random(17)
    copy = shutil.copytree(suite["prefix"].parent, tmp_path / "suite")
    meta_path = copy / "mod.json"
    text = meta_path.read_bytes()
    cases = [(None, d) for d in _mutations(rng, text)]
    cases += [(k, json.dumps(doc).encode()) for k, doc in _extreme_docs(rng, json.loads(text))]
    refused = 0
    for key, data in cases:
        meta_path.write_bytes(data)
        try:
            describe_suite(copy / "mod")
        except ArtifactError as e:
            assert str(meta_path) in str(e) or str(copy / "mod") in str(e), f"{e!r} ({key})"
            refused += 1
    assert refused > len(cases) // 2


def test_npz_reader_names_any_damaged_file(suite, tmp_path):
    from deploy.tools.files import npz_bytes, read_npz
    rng = random.Random(18)
    good = npz_bytes({"output_0": np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)})
    path = tmp_path / "o.npz"
    for data in _mutations(rng, good):
        path.write_bytes(data)
        try:
            got = read_npz(path, ["output_0"], "output")
        except DeployError as e:
            assert str(path) in str(e), e
        else:
            assert got[0].shape == (1, 3, 4, 4)


def test_image_reader_names_any_damaged_file(tmp_path):
    from deploy.data.image import read_image_rgb
    rng = random.Random(19)
    good = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8))[1].tobytes()
    path = tmp_path / "i.png"
    for data in _mutations(rng, good):
        path.write_bytes(data)
        _accepts_or_names(read_image_rgb, path)


def test_damaged_npz_and_images_are_counted_by_the_clis(suite, tmp_path, capsys):
    """run over damaged images, perf --datalist and eval over damaged npz files: exit 0, each bad file
    reported by path, the good ones done; an earlier file in the output folder kept."""
    rng = random.Random(20)
    images = shutil.copytree(suite["images"], tmp_path / "images")
    first = sorted(images.iterdir())[0]
    bad_image = images / "bad.png"
    bad_image.write_bytes(first.read_bytes()[:rng.randint(10, 200)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = _cli(capsys, "run", "--image_dir", images, "-m", suite["prefix"], "--vdsp_params", suite["vdsp"],
                     "--save_dir", out, "--no-progress")
    assert code == 0 and "bad.png" in err and (out / "keep.txt").read_text() == "mine", err
    _cli(capsys, "image2npz", "--dataset_path", suite["images"], "--target_path", tmp_path / "npz",
         "--text_path", tmp_path / "list.txt")
    lines = (tmp_path / "list.txt").read_text().split()
    damaged = [tmp_path / "npz" / "trunc.npz", tmp_path / "npz" / "random.npz"]
    damaged[0].write_bytes(Path(lines[0]).read_bytes()[:rng.randint(10, 300)])
    damaged[1].write_bytes(rng.randbytes(500))
    (tmp_path / "list2.txt").write_text("\n".join(lines + [str(p) for p in damaged]) + "\n")
    code, err = _cli(capsys, "perf", "-m", suite["prefix"], "--vdsp_params", suite["vdsp"], "--datalist",
                     tmp_path / "list2.txt", "--path_output", tmp_path / "po")
    assert code == 0 and all(str(p) in err for p in damaged) and "skipped 2" in err, err
    assert len(list((tmp_path / "po").glob("output_*.npz"))) == len(lines)
    outs = shutil.copytree(out, tmp_path / "outs", ignore=shutil.ignore_patterns("*.png", "*.csv", "*.json"))
    victim = sorted(outs.glob("*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    code, err = _cli(capsys, "eval", "--input_npz_path", tmp_path / "list.txt", "--out_npz_dir", outs,
                     "--draw_dir", tmp_path / "drawn")
    results = (tmp_path / "drawn" / "results.csv").read_text()
    assert code == 0 and re.search(r"cannot read output .*" + re.escape(victim.name), results), results


@pytest.mark.parametrize("option", ["-b", "-i", "-p", "--iterations", "--warmup", "--workers", "--queue_size"])
def test_perf_count_options_take_any_number_without_a_traceback(suite, tmp_path, capsys, option):
    """Extreme values of every count option: exit 2 naming the option, before any output is written (never
    a run of hours: a count that would take longer than --max-seconds is refused after one request)."""
    valid = {("--warmup", "0"), ("--queue_size", "0")}  # no warm-up; latency mode
    for value in ("0", "-1", "nan", "1e309", str(2**31), str(2**63), str(10**30)):
        extra = [] if option in ("--iterations", "--warmup") else ["--iterations", "1", "--warmup", "0"]
        code, err = _cli(capsys, "perf", "-m", suite["prefix"], *extra, option, value, "--json", tmp_path / "p.json")
        if (option, value) in valid:
            assert code == 0 and (tmp_path / "p.json").is_file()
            (tmp_path / "p.json").unlink()
            continue
        assert code == 2, (option, value, err)
        names = (option, "-i ", "-b ", "memory") if option not in ("--iterations", "--warmup") else (option,)
        assert any(n in err for n in names), err
        assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("option", ["--batch", "--workers", "--limit", "--threshold", "--output-index"])
def test_run_options_take_any_value_without_a_traceback(suite, tmp_path, capsys, option):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for value in ("-1", "nan", "1e309", str(2**63), str(10**30), "x"):
        _cli(capsys, "run", "--image_dir", suite["images"], "-m", suite["prefix"], "--vdsp_params", suite["vdsp"],
             "--save_dir", out, "--no-progress", option, value)
        assert (out / "keep.txt").read_text() == "mine"
