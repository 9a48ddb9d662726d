"""The four tools end to end on a compiled model and a synthetic DSB2018 set: vendor flags and
ours, exact output names, corrupt input, interruption + --resume, perf's report and accuracy mode,
and the two accuracy routes (vsx_inference.py vs image2npz → perf --datalist → vamp_eval) agreeing."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from deploy.cli import cli
from deploy.errors import DeployError
from deploy.data import metrics
from deploy.tools import files, report
from deploy.tools.run import run

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def tiny_seg(size: int = SIZE) -> onnx.ModelProto:
    """A small segmenter with a real answer: sigmoid(3x3 box-filtered brightness) as `output` (the
    prediction, named by the `main_output` metadata) after a random auxiliary head `aux`."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (np.full((1, 3, 1, 1), 4 / 3, np.float32), "w_gray"), (np.array([0.8], np.float32), "b_gray"),
        (np.full((1, 1, 3, 3), 1 / 9, np.float32), "box"),
        (rng.normal(0, 0.5, (1, 3, 3, 3)).astype(np.float32), "w_aux"))]
    nodes = [helper.make_node("Conv", ["input", "w_gray", "b_gray"], ["g"], kernel_shape=[1, 1]),
             helper.make_node("Conv", ["g", "box"], ["s"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["s"], ["output"]),
             helper.make_node("Conv", ["input", "w_aux"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["a"], ["aux"])]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1, size, size]) for n in ("aux", "output")]
    m = helper.make_model(helper.make_graph(nodes, "tiny_seg", [inp], outs, inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"main_output": "output"})
    return m


def vdsp_json(size: int = SIZE) -> dict:
    return {"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR",
            "OpConfig": {"IimageFormat": "RGB_PLANAR", "IimageWidth": 256, "IimageHeight": 256,
                         "IimageWidthPitch": 256, "IimageHeightPitch": 256, "OimageWidth": size, "OimageHeight": size,
                         "Mean": [0.5, 0.5, 0.5], "Std": [0.5, 0.5, 0.5], "NormaType": "DIV255_MINUSMEAN_DIVSTD",
                         "ColorCvtCode": "RGB2BGR", "ResizeType": "BILINEAR_CV"}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Compiled once: the model prefix, its vdsp JSON and a 12-image synthetic DSB2018 set."""
    from deploy.data.synth import synth_dsb2018

    root = tmp_path_factory.mktemp("tools")
    (root / "vdsp.json").write_text(json.dumps(vdsp_json()))
    data = synth_dsb2018(root / "data", n=12, seed=0)
    return {"root": root, "prefix": compile_tiny(root, tiny_seg(), "tiny_seg"), "vdsp": root / "vdsp.json",
            "images": data / "images", "masks": data / "masks"}


def compile_tiny(root: Path, model: onnx.ModelProto, name: str) -> Path:
    from deploy.compiler import compile_build
    from deploy.config import load_build_config
    onnx.save(model, root / f"{name}.onnx")
    (root / f"{name}.yaml").write_text(
        f"name: {name}\n"
        f"frontend: {{type: onnx, checkpoint: ./{name}.onnx, dtype: fp32, shape: {{input: [1, 3, {SIZE}, {SIZE}]}}}}\n"
        "backend: {type: tvm_vacc, dtype: fp32}\n"
        "workspace: {path: ./ws}\n")
    return compile_build(load_build_config(root / f"{name}.yaml"))


@pytest.fixture(scope="module")
def full_run(env):
    """The vendor command (flags unchanged) through the root script, batch 4: the reference run."""
    out = env["root"] / "vsx_out"
    cmd = [sys.executable, str(REPO / "vsx_inference.py"), "--file_path", str(env["images"]),
           "--gt_path", str(env["masks"]), "--model_prefix_path", str(env["prefix"]),
           "--vdsp_params_info", str(env["vdsp"]), "--device_id", "0", "--batch", "4", "--save_dir", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "mean DIC:" in res.stdout and "mean IoU:" in res.stdout and "throughput:" in res.stdout
    return out, json.loads((out / "summary.json").read_text())


def _invoke(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res


# ------------------------------------------------------------------------------------------ run
def test_run_writes_exact_files_and_scores(env, full_run):
    out, summary = full_run
    stems = sorted(p.stem for p in env["images"].iterdir())
    expected = {f"{s}{suffix}" for s in stems for suffix in (".npz", ".png", "_model.png")}
    expected |= {"results.csv", "run.json", "summary.json", "summary.md", "iou_hist.png"}
    assert {p.name for p in out.iterdir()} == expected
    assert summary["output_index"] == 1  # mod.json main_output "output", not the first output "aux"
    assert summary["status_counts"] == {"ok": 12} and summary["scored"] == 12
    ious = []
    for s in stems:
        with np.load(out / f"{s}.npz") as z:
            assert z.files == ["output_0", "output_1"]
            assert z["output_0"].shape == z["output_1"].shape == (1, 1, SIZE, SIZE)  # batch dim kept
            prob = z["output_1"][0, 0]
        model_mask = cv2.imread(str(out / f"{s}_model.png"), cv2.IMREAD_UNCHANGED)
        assert model_mask.shape == (SIZE, SIZE) and set(np.unique(model_mask)) <= {0, 255}
        assert ((model_mask > 0) == (prob >= 0.5)).all()
        src_mask = cv2.imread(str(out / f"{s}.png"), cv2.IMREAD_UNCHANGED)
        assert src_mask.shape == (256, 256)
        ious.append(metrics.unetzoo_scores(prob, cv2.imread(str(env["masks"] / f"{s}.png"), 0))[0])
    assert summary["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert 0.01 < summary["mean_iou"] < 0.99  # a real, non-degenerate score
    rows = report.read_rows(out / "results.csv")
    assert sorted(rows) == sorted(p.name for p in env["images"].iterdir())


def test_run_our_flags(env, full_run, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for p in env["masks"].iterdir():
        shutil.copy(p, masks / f"{p.stem}_seg.png")
    out = tmp_path / "out"
    res = _invoke("run", "--image_dir", env["images"], "--mask_dir", masks, "--mask-suffix", "_seg.png",
                  "-m", env["prefix"], "--vdsp_params", env["vdsp"], "--device", "0", "--batch", "5", "--workers",
                  "1", "--limit", "7", "--threshold", "0.5", "--output-index", "1", "--num-threads", "1",
                  "--no-progress", "-v", "--save_dir", out)
    assert res.output.count("validation DIC:") == 7
    s = json.loads((out / "summary.json").read_text())
    assert s["images"] == s["scored"] == 7 and s["batch"] == 5
    ref = report.read_rows(full_run[0] / "results.csv")
    for name, row in report.read_rows(out / "results.csv").items():  # batch 5 vs batch 4: same scores
        assert row.mask == Path(name).stem + "_seg.png"
        assert row.iou == pytest.approx(ref[name].iou, abs=1e-9)
    out2 = tmp_path / "out2"
    _invoke("run", "--image_dir", env["images"], "-m", env["prefix"], "--vdsp_params", env["vdsp"],
            "--output-index", "0", "--threshold", "0.3", "--limit", "2", "--sigmoid", "--save_dir", out2)
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["output_index"] == 0 and s2["threshold"] == 0.3 and s2["status_counts"] == {"no mask": 2}
    stem = sorted(env["images"].iterdir())[0].stem
    assert (cv2.imread(str(out2 / f"{stem}_model.png"), 0) == 255).all()  # sigmoid of a probability >= 0.5
    with pytest.raises(DeployError, match="overwrite inputs"):
        run(env["images"], env["prefix"], env["vdsp"], env["images"])


def test_run_corrupt_and_missing_inputs_are_counted(env, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    shutil.copytree(env["images"], images)
    shutil.copytree(env["masks"], masks)
    names = sorted(p.name for p in images.iterdir())
    (images / names[0]).write_bytes(b"")            # corrupt image
    (masks / names[1]).unlink()                      # missing mask
    (masks / names[2]).write_bytes(b"\x89PNG\r\n")   # corrupt mask
    res = CliRunner().invoke(cli, ["run", "--file_path", str(images), "--gt_path", str(masks), "--model_prefix_path",
                                   str(env["prefix"]), "--vdsp_params_info", str(env["vdsp"]),
                                   "--save_dir", str(tmp_path / "out"), "--batch", "4"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["status_counts"] == {"no mask": 1, "ok": 9, "unreadable image": 1, "unreadable mask": 1}
    assert "3 image(s) not scored" in res.output and names[0] in res.output
    assert not (tmp_path / "out" / f"{Path(names[0]).stem}.npz").exists()
    assert (tmp_path / "out" / f"{Path(names[1]).stem}.npz").exists()  # inferred, only not scored


def test_run_interrupted_then_resume(env, full_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    add = report.RowAppender.add
    calls = []

    def interrupt_after_five(self, row):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(row)
        add(self, row)

    monkeypatch.setattr(report.RowAppender, "add", interrupt_after_five)
    with pytest.raises(KeyboardInterrupt):
        run(env["images"], env["prefix"], env["vdsp"], out, env["masks"], batch=2, progress=False)
    monkeypatch.setattr(report.RowAppender, "add", add)
    rows = report.read_rows(out / "results.csv")
    assert len(rows) == 5
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
    keys = ("output_0", "output_1")
    for name in rows:  # every finished output is complete
        stem = Path(name).stem
        assert files.npz_ok(out / f"{stem}.npz", keys) and cv2.imread(str(out / f"{stem}.png")) is not None
    torn = out / f"{Path(sorted(rows)[0]).stem}.npz"
    torn.write_bytes(torn.read_bytes()[:100])  # a torn file must be redone
    summary = run(env["images"], env["prefix"], env["vdsp"], out, env["masks"], batch=3, resume=True,
                  progress=False)
    assert summary["resumed"] == 4 and summary["processed"] == 8
    assert files.npz_ok(torn, keys)
    assert summary["mean_iou"] == pytest.approx(full_run[1]["mean_iou"], abs=1e-9)
    assert len(report.read_rows(out / "results.csv")) == 12


def test_resume_refuses_other_settings(env, tmp_path):
    out = tmp_path / "out"
    run(env["images"], env["prefix"], env["vdsp"], out, env["masks"], batch=4, limit=3, progress=False)
    with pytest.raises(DeployError, match="threshold differ"):
        run(env["images"], env["prefix"], env["vdsp"], out, env["masks"], threshold=0.7, resume=True, progress=False)
    assert len(report.read_rows(out / "results.csv")) == 3  # nothing lost by the refusal
    (out / "run.json").unlink()  # an older run without run.json resumes, with a warning
    assert run(env["images"], env["prefix"], env["vdsp"], out, env["masks"], resume=True,
               progress=False)["resumed"] == 3


def test_run_no_npz_writes_masks_and_scores_only(env, full_run, tmp_path):
    out = tmp_path / "out"
    _invoke("run", "--image_dir", env["images"], "--mask_dir", env["masks"], "-m", env["prefix"], "--vdsp_params",
            env["vdsp"], "--batch", "4", "--limit", "5", "--no-npz", "--no-progress", "--save_dir", out)
    s = json.loads((out / "summary.json").read_text())
    assert s["npz"] is False and s["scored"] == 5 and not list(out.glob("*.npz"))
    ref = report.read_rows(full_run[0] / "results.csv")
    for name, row in report.read_rows(out / "results.csv").items():
        assert row.iou == pytest.approx(ref[name].iou, abs=1e-9)
        assert (out / f"{Path(name).stem}.png").is_file() and (out / f"{Path(name).stem}_model.png").is_file()
    # resuming without npz keeps them; resuming with npz redoes them (their npz is missing)
    assert run(env["images"], env["prefix"], env["vdsp"], out, env["masks"], limit=6, npz=False, resume=True,
               progress=False)["resumed"] == 5
    again = run(env["images"], env["prefix"], env["vdsp"], out, env["masks"], limit=6, resume=True, progress=False)
    assert again["resumed"] == 0 and len(list(out.glob("*.npz"))) == 6


def test_run_config_errors_name_the_problem(env, tmp_path):
    bad = vdsp_json(48)
    (tmp_path / "v.json").write_text(json.dumps(bad))
    with pytest.raises(DeployError, match="48x48.*OimageHeight"):
        run(env["images"], env["prefix"], tmp_path / "v.json", tmp_path / "o")
    with pytest.raises(DeployError, match="not found"):
        run(env["images"], tmp_path / "nope" / "mod", env["vdsp"], tmp_path / "o")


# ------------------------------------------------------------- image2npz → perf → eval (done-when)
@pytest.mark.slow  # two more fresh processes (image2npz.py, vamp_eval.py)
def test_vamp_route_matches_vsx_route(env, full_run, tmp_path):
    py = sys.executable
    datalist, npz_in, npz_out = tmp_path / "npz_datalist.txt", tmp_path / "images_npz", tmp_path / "npz_output"
    subprocess.run([py, str(REPO / "image2npz.py"), "--dataset_path", str(env["images"]), "--target_path",
                    str(npz_in), "--text_path", str(datalist)], check=True, capture_output=True, timeout=300)
    res = _invoke("perf", "-m", env["prefix"], "--vdsp_params", env["vdsp"], "-i", "1", "p", "1", "-b", "1",
                  "-s", "[3,96,96]", "--datalist", datalist, "--path_output", npz_out)
    assert "read 'p 1' as '-p 1'" in res.output
    outs = sorted(p.name for p in npz_out.iterdir())
    assert outs == [f"output_{i:06d}.npz" for i in range(12)]
    with np.load(npz_out / "output_000003.npz") as z:
        assert z.files == ["output_0", "output_1"] and z["output_1"].shape == (1, 1, SIZE, SIZE)
    draw = tmp_path / "draw"
    ev = subprocess.run([py, str(REPO / "vamp_eval.py"), "--src_dir", str(env["images"]), "--gt_dir",
                         str(env["masks"]), "--input_npz_path", str(datalist), "--out_npz_dir", str(npz_out),
                         "--input_shape", str(SIZE), str(SIZE), "--draw_dir", str(draw), "--vamp_flag",
                         "-m", str(env["prefix"])], capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    vamp = json.loads((draw / "summary.json").read_text())
    assert abs(vamp["mean_iou"] - full_run[1]["mean_iou"]) < 1e-6
    assert abs(vamp["mean_dice"] - full_run[1]["mean_dice"]) < 1e-6
    assert "Mean IoU:" in ev.stdout and (draw / "iou_hist.png").is_file() and (draw / "summary.md").is_file()
    # without --vamp_flag outputs are matched by input name: `deploy run`'s <stem>.npz files
    _invoke("eval", "--src_dir", env["images"], "--gt_dir", env["masks"], "--input_npz_path", datalist,
            "--out_npz_dir", full_run[0], "--draw_dir", tmp_path / "draw2", "--output-index", "1")
    by_name = json.loads((tmp_path / "draw2" / "summary.json").read_text())
    assert abs(by_name["mean_iou"] - full_run[1]["mean_iou"]) < 1e-6


def test_multiclass_run_reads_palette_masks_and_matches_eval(env, tmp_path):
    """A 3-class model scored against VOC-style palette masks: `deploy run` reads the palette indices
    (not the colours' grey) and gives the per-class mean IoU that `deploy eval` gives on its outputs."""
    from PIL import Image
    from deploy.data.image import read_label_map
    w = np.random.default_rng(1).normal(0, 1, (3, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w"], ["output"], kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, "tiny3", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    prefix = compile_tiny(tmp_path, model, "tiny3")
    images = sorted(env["images"].iterdir())[:4]
    masks = tmp_path / "masks"
    masks.mkdir()
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192]  # VOC: 1, 2 dark; 255 = border
    for i, img in enumerate(images):
        labels = np.zeros((256, 256), np.uint8)
        labels[:, 64 * i:] = 1
        labels[128:, :] = 2
        labels[120:136, :] = 255
        m = Image.fromarray(labels, "P")
        m.putpalette(palette)
        m.save(masks / img.name)
    out = tmp_path / "run"
    summary = run(env["images"], prefix, env["vdsp"], out, masks, batch=2, limit=4, progress=False)
    assert summary["scored"] == 4
    for row in report.read_rows(out / "results.csv").values():
        with np.load(out / f"{Path(row.image).stem}.npz") as z:
            pred = metrics.predict(z["output_0"][0])
        gt = metrics.label_gt(read_label_map(masks / row.image), (SIZE, SIZE))
        assert row.iou == pytest.approx(metrics.class_mean(pred.labels, gt, 3)[0], abs=1e-9)
        assert set(np.unique(gt)) <= {0, 1, 2, 255} and (gt == 2).any()  # indices, not the colours' grey
    datalist = tmp_path / "list.txt"
    datalist.write_text("".join(f"{tmp_path / 'npz' / p.stem}.npz\n" for p in images))
    _invoke("eval", "--src_dir", env["images"], "--gt_dir", masks, "--input_npz_path", datalist,
            "--out_npz_dir", out, "--draw_dir", tmp_path / "draw", "--num-classes", "3")
    ev = json.loads((tmp_path / "draw" / "summary.json").read_text())
    assert abs(ev["mean_iou"] - summary["mean_iou"]) < 1e-9


# ----------------------------------------------------------------------------------------- perf
LATENCY_KEYS = {"avg", "min", "max", "p50", "p99"}


def test_perf_latency_mode_threads_and_json(env, tmp_path):
    j = tmp_path / "perf.json"
    res = _invoke("perf", "-m", env["prefix"], "--vdsp_params", env["vdsp"], "-i", "2", "-p", "1", "-b", "2",
                  "-s", "[3,256,256]", "-d", "0", "--iterations", "6", "--warmup", "1", "--percentiles", "[50,99]",
                  "--queue_size", "0", "--json", j)
    r = json.loads(j.read_text())
    assert r["mode"] == "latency" and r["instances"] == 2 and r["requests"] == 12 and r["images"] == 24
    assert r["input_shapes"] == [[3, 256, 256]] and r["input_dtypes"] == ["u1"]
    assert set(r["e2e_latency_us"]) == set(r["model_latency_us"]) == LATENCY_KEYS
    assert r["e2e_latency_us"]["avg"] >= r["model_latency_us"]["avg"] > 0  # preprocessing is in e2e
    assert r["throughput_qps"] > 0 and r["cpu_percent"] > 0 and r["peak_rss_mib"] > 10
    assert "throughput (qps):" in res.output and "p99 latency:" in res.output and "peak memory (MiB):" in res.output


def test_perf_short_runs_report_cpu_or_na_never_a_silent_zero(env):
    """One request of a tiny model uses well under one 10 ms tick of os.times(), which read 0.0 %:
    the utilisation is either measured (positive) or reported as n/a."""
    from deploy.tools.common import load_model
    from deploy.tools.perf import PerfConfig, benchmark, format_report
    cfg = PerfConfig(prefix=str(env["prefix"]), iterations=1, warmup=0, queue_size=0)
    model = load_model(cfg.prefix, cfg.threads_per_instance())
    for _ in range(5):
        r = benchmark(cfg, model)
        assert r["cpu_percent"] is None or r["cpu_percent"] > 0
        line = next(x for x in format_report(r).splitlines() if x.startswith("cpu utilisation (%):"))
        assert ("n/a" in line) == (r["cpu_percent"] is None)


@pytest.mark.slow  # spawns two processes importing TVM
def test_perf_throughput_mode_processes_model_only(env, tmp_path):
    j = tmp_path / "perf.json"
    _invoke("perf", "-m", env["prefix"], "-p", "2", "-b", "3", "--iterations", "4", "--warmup", "1",
            "--queue_size", "2", "--json", j)
    r = json.loads(j.read_text())
    assert r["mode"] == "throughput" and r["processes"] == 2 and r["requests"] == 8
    assert r["input_shapes"] == [[3, SIZE, SIZE]] and r["input_dtypes"] == ["float32"]
    assert r["peak_rss_total_mib"] >= r["peak_rss_mib"]
    with pytest.raises(DeployError, match="2 input shape"):
        _invoke("perf", "-m", env["prefix"], "-s", "[[3,32,32],[1,10]]", "--iterations", "1")


def test_bench_stream_smoke(env, tmp_path):
    from deploy.tools import bench_stream
    r = bench_stream.run(tmp_path, env["prefix"], env["vdsp"], env["images"], batch=4, images=12, iterations=3)
    assert r["images"] == 12 and r["model_only_qps"] > 0 and r["stream_ips"] > 0
    assert len(r["ratios"]) == 3 and r["ratio"] == sorted(r["ratios"])[1] and len(r["model_only_qps_runs"]) == 4
    assert json.loads((tmp_path / "stream_bench.json").read_text())["ratio"] == pytest.approx(r["ratio"])


def test_perf_profile_lists_the_kernels(env, tmp_path):
    """--profile adds the per-kernel table (stdout) and its rows (JSON `kernels`), slowest first."""
    j = tmp_path / "perf.json"
    res = _invoke("perf", "-m", env["prefix"], "--vdsp_params", env["vdsp"], "-b", "1", "-s", "[3,256,256]",
                  "--iterations", "3", "--warmup", "1", "--profile", "--json", j)
    kernels = json.loads(j.read_text())["kernels"]
    assert kernels and all(k["calls"] >= 1 for k in kernels) and any("conv2d" in k["name"] for k in kernels)
    assert [k["ms"] for k in kernels] == sorted((k["ms"] for k in kernels), reverse=True)
    assert "| kernel | calls | ms | share |" in res.output
