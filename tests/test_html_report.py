"""`deploy report`: reports of real `deploy run` folders (one run; fp32 against int8 of a small
compiled model) checked file by file, a 10 000-image results file that must stay a bounded page,
and the report used in headless Chromium as a person would (sort by clicking, page, filter; the
comparison view; no console error), with screenshots in the test's tmp dir."""
import json
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from deploy.cli import cli
from deploy.errors import DeployError
from deploy.tools import html_report, report
from deploy.tools.report_runs import read_labels
from deploy.tools.report_thumbs import GAINED, LOST
from deploy.tools.run import run
from cdp_browser import CHROMIUM, Browser
from test_tools_e2e import SIZE, tiny_seg, vdsp_json



def _data(out: Path) -> dict:
    text = (out / "data.js").read_text()
    assert text.startswith("window.REPORT_DATA = ") and text.rstrip().endswith(";")
    return json.loads(text[len("window.REPORT_DATA = "):].rstrip().rstrip(";"))


def _build_yaml(root: Path, dtype: str, images: Path) -> Path:
    import onnx
    onnx.save(tiny_seg(), root / "tiny_seg.onnx")
    doc = {"name": f"tiny_{dtype}",
           "frontend": {"type": "onnx", "checkpoint": "./tiny_seg.onnx", "shape": {"input": [1, 3, SIZE, SIZE]}},
           "backend": {"type": "tvm_vacc", "dtype": dtype},
           "dataset": {"type": "tvm", "path": str(images), "sampler": {"suffix": "png", "get_data_num": 8},
                       "process_ops": [{"type": "DecodeImage"}, {"type": "CvtColor", "code": "COLOR_RGB2BGR"},
                                       {"type": "Resize", "size": [SIZE, SIZE]},
                                       {"type": "Normalize", "mean": [0.5] * 3, "std": [0.5] * 3},
                                       {"type": "ToTensor"}]},
           "workspace": {"path": f"./ws_{dtype}"}}
    path = root / f"tiny_{dtype}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`deploy run` of one small model compiled fp32 and int8 on the same 10 synthetic images."""
    from deploy.compiler import compile_build
    from deploy.config import load_build_config
    from deploy.data.synth import synth_dsb2018

    root = tmp_path_factory.mktemp("report")
    data = synth_dsb2018(root / "data", n=10, seed=3)
    (root / "vdsp.json").write_text(json.dumps(vdsp_json()))
    out, prefixes = {}, {}
    for dtype in ("fp32", "int8"):
        prefixes[dtype] = compile_build(load_build_config(_build_yaml(root, dtype, data / "images")), progress=False)
        out[dtype] = root / f"run_{dtype}"
        run(data / "images", prefixes[dtype], root / "vdsp.json", out[dtype], data / "masks", progress=False)
    # the fp32 model with a stricter threshold: masks that really differ, for the drop statistics
    out["strict"] = root / "run_strict"
    run(data / "images", prefixes["fp32"], root / "vdsp.json", out["strict"], data / "masks", threshold=0.6,
        progress=False)
    return out, data, prefixes


def test_one_run_report(runs, tmp_path):
    dirs, data, _ = runs
    out = tmp_path / "one"
    index = html_report.build([dirs["fp32"]], out)
    assert index == out / "index.html"
    page = index.read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from the network
    assert "fp32" in page and "Score distribution" in page and "dropped most" not in page
    assert "llvm" in page  # the target from mod.json
    rows = report.read_rows(dirs["fp32"] / "results.csv")
    d = _data(out)
    assert [r[0] for r in d["rows"]] == sorted(rows)
    for r, pics in zip(d["rows"], d["pics"]):
        assert r[2] == pytest.approx(rows[r[0]].iou) and r[3] == pytest.approx(rows[r[0]].dice)
        for p in pics:  # image, ground truth, overlay: all there, downscaled
            img = cv2.imread(str(out / p))
            assert img is not None and max(img.shape[:2]) <= 128
    gt = cv2.imread(str(out / d["pics"][0][1]), 0)
    assert gt.max() > 0 and gt.min() == 0  # the synthetic masks have foreground and background
    hist = cv2.imread(str(out / "iou_hist.png"))
    assert hist.shape[:2] == (400, 640)


def test_fp32_vs_int8_report(runs, tmp_path):
    dirs, *_ = runs
    out = tmp_path / "cmp"
    html_report.build([dirs["fp32"], dirs["int8"]], out, top=4)
    page = (out / "index.html").read_text()
    assert "IoU change against fp32" in page and "The 4 images whose IoU dropped most" in page
    assert {"iou_hist.png", "iou_delta.png", "iou_scatter.png", "data.js", "index.html", "thumbs"} <= \
        {p.name for p in out.iterdir()}
    fp32, int8 = (report.read_rows(dirs[k] / "results.csv") for k in ("fp32", "int8"))
    d = _data(out)
    keys = [c["key"] for c in d["columns"]]
    assert keys == ["image", "status", "iou_0", "dice_0", "iou_1", "dice_1", "delta_1", "differ_1"]
    for r in d["rows"]:
        name = r[0]
        assert r[6] == pytest.approx(int8[name].iou - fp32[name].iou, abs=1e-12)
        a = read_labels(dirs["fp32"] / f"{Path(name).stem}.png")
        b = read_labels(dirs["int8"] / f"{Path(name).stem}.png")
        assert r[7] == pytest.approx(float((a != b).mean()))
    worst = re.findall(r'<tr data-row="(\d+)">', page)
    assert len(worst) == 4
    deltas = [d["rows"][int(i)][6] for i in worst]
    assert deltas == sorted(deltas) and deltas[0] == min(r[6] for r in d["rows"])
    for i in worst:  # side-by-side masks and the disagreement map of each compared image
        for k in ("m0", "m1", "d1"):
            assert (out / "thumbs" / f"{i}_{k}.png").is_file()


def test_drops_and_disagreement_maps(runs, tmp_path):
    dirs, *_ = runs
    out = tmp_path / "three"
    html_report.build([dirs["fp32"], dirs["int8"], dirs["strict"]], out, top=3)
    d = _data(out)
    assert [c["label"] for c in d["columns"]][-2:] == ["ΔIoU run_strict", "pixels differ run_strict"]
    delta = np.array([r[-2] for r in d["rows"]])
    assert (delta != 0).any()
    page = (out / "index.html").read_text()
    drops = re.search(r'<table class="drops">.*?</table>', page).group(0)
    cells = re.findall(r"<td>([^<]*)</td>", drops.split("<tr>")[-1])  # the run_strict line
    assert cells[0] == "run_strict" and cells[4] == f"{delta.mean():+.4f}"
    assert int(cells[6]) == int((delta < -0.01).sum()) and int(cells[9]) == int((delta > 0.01).sum())
    worst = re.findall(r'<tr data-row="(\d+)">', page)[0]
    diff = cv2.cvtColor(cv2.imread(str(out / "thumbs" / f"{worst}_d2.png")), cv2.COLOR_BGR2RGB)
    lost = (diff == LOST).all(axis=2)
    assert lost.any()  # a stricter threshold only loses foreground
    assert not (diff == GAINED).all(axis=2).any()


def test_int8_analysis_adds_the_layers_section(runs, tmp_path):
    """`deploy analyze` of the int8 build: the report finds its folder beside the int8 suite (tiny_seg
    quantizes no conv: the section says so), and `--analysis DIR` adds one of a net with quantized
    convs: the per-layer SQNR plot, the flagged convs and the skip list."""
    import shutil

    import onnx
    from test_quantize import make_cfg, small_net, write_images
    dirs, data, prefixes = runs
    res = CliRunner().invoke(cli, ["analyze", str(prefixes["int8"].parents[2] / "tiny_int8.yaml"), "--no-progress"])
    assert res.exit_code == 0, res.output
    folder = prefixes["int8"].parent.with_name("tiny_int8.analysis")
    try:
        a = json.loads((folder / "analysis.json").read_text())
        assert a["images"]["scored"] == a["images"]["count"] > 0 and a["layers"] == []  # masks beside the images
        page = html_report.build([dirs["fp32"], dirs["int8"]], tmp_path / "auto").read_text()
        assert "int8 layers" in page and "No conv stands out" in page and "mIoU" in page
        assert (tmp_path / "auto" / "layers_sqnr.png").is_file()
        assert "int8 layers" not in html_report.build([dirs["fp32"]], tmp_path / "fp32").read_text()
    finally:
        shutil.rmtree(folder)  # the other tests see the runs without it
    write_images(tmp_path / "images")
    onnx.save(small_net(), tmp_path / "net.onnx")
    cfg = make_cfg(tmp_path, mode="max")
    res = CliRunner().invoke(cli, ["analyze", str(cfg.source), "--min-sqnr", "60", "--out-dir", str(tmp_path / "an"),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    a = json.loads((tmp_path / "an" / "analysis.json").read_text())
    page = html_report.build([dirs["fp32"]], tmp_path / "named", analysis=tmp_path / "an").read_text()
    plot = cv2.imread(str(tmp_path / "named" / "layers_sqnr.png"))
    assert 'src="layers_sqnr.png"' in page and plot.shape[1] >= 640
    assert a["search"]["skip_nodes"] and all(f"<code>{n}</code>" in page for n in a["search"]["skip_nodes"])
    flagged = [L["node"] for L in a["layers"] if L["flags"]]
    assert flagged and all(f"<td>{n}</td>" in page for n in flagged)
    with pytest.raises(DeployError, match="analysis.json"):
        html_report.build([dirs["fp32"]], tmp_path / "none", analysis=tmp_path)


def _synthetic_run(folder: Path, n: int, seed: int, dtype: str) -> None:
    """A results.csv of `n` images (what a 10 000-image `deploy run` leaves, without its masks)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows = [report.Row(f"img_{i:05d}.png", report.OK, float(v), float(2 * v / (1 + v)), mask=f"img_{i:05d}.png")
            for i, v in enumerate(np.clip(rng.normal(0.8, 0.1, n), 0, 1))]
    report.write_rows(folder / "results.csv", rows)
    (folder / "run.json").write_text(json.dumps({"model": {"name": "synthetic", "dtype": dtype}}))
    (folder / "summary.json").write_text(json.dumps(report.summarize(rows, throughput_ips=100.0, batch=8)))


@pytest.fixture(scope="module")
def big_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    _synthetic_run(root / "fp32", 10_000, 0, "fp32")
    _synthetic_run(root / "int8", 10_000, 1, "int8")
    t = time.perf_counter()
    index = html_report.build([root / "fp32", root / "int8"], root / "report")
    return index, time.perf_counter() - t


def test_10k_images_page_stays_bounded(big_report):
    index, seconds = big_report
    assert seconds < 120
    assert index.stat().st_size < 100_000  # the rows are in data.js, paged in by the script
    d = _data(index.parent)
    assert len(d["rows"]) == 10_000 and d["page_size"] == html_report.PAGE_SIZE
    assert "only in the other run" in index.read_text()  # compared, though no mask is there to draw


def test_missing_matplotlib_is_a_clear_error(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(DeployError, match=r"matplotlib, which is missing.*pip install matplotlib"):
        html_report.build([runs[0]["fp32"]], tmp_path / "r")
    assert not (tmp_path / "r" / "thumbs").exists()


def test_cli_and_run_hint(runs, tmp_path):
    res = CliRunner().invoke(cli, ["report", str(runs[0]["fp32"]), str(runs[0]["int8"]), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"wrote {tmp_path / 'index.html'}" in res.output
    res = CliRunner().invoke(cli, ["report", str(tmp_path), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "no results.csv" in str(res.exception)
    assert report.report_hint("runs/a").startswith("report: deploy report runs/a --out runs/a/report")
    dirs, data, prefixes = runs
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--image_dir", str(data / "images"), "-m", str(prefixes["int8"]),
                                   "--vdsp_params", str(dirs["fp32"].parent / "vdsp.json"), "--limit", "2",
                                   "--save_dir", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == report.report_hint(out)
    assert json.loads((out / "summary.json").read_text())["image_dir"] == str((data / "images").resolve())


# ------------------------------------------------------------------------------- headless browser
@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


ROWS = "[...document.querySelectorAll('#table-body tr')].map(tr => +tr.dataset.row)"


def _click(browser: Browser, selector: str) -> None:
    browser.js(f"document.querySelector({json.dumps(selector)}).click()")


@pytest.mark.slow  # starts Chromium
def test_report_in_a_real_browser(runs, big_report, browser, tmp_path):
    dirs = runs[0]
    index = html_report.build([dirs["fp32"], dirs["int8"], dirs["strict"]], tmp_path / "cmp", top=4)
    d = _data(index.parent)
    col = {c["key"]: k for k, c in enumerate(d["columns"])}
    browser.open(index.as_uri())
    assert browser.js(ROWS) == sorted(range(10), key=lambda i: (d["rows"][i][col["delta_1"]], i))
    _click(browser, 'th[data-key="iou_2"]')  # a person sorts by the strict run's IoU, then reverses it
    iou = [d["rows"][i][col["iou_2"]] for i in browser.js(ROWS)]
    assert iou == sorted(iou)
    _click(browser, 'th[data-key="iou_2"]')
    iou = [d["rows"][i][col["iou_2"]] for i in browser.js(ROWS)]
    assert iou == sorted(iou, reverse=True)
    assert browser.js("document.querySelector('th[data-key=\"iou_2\"]').textContent") == "IoU run_strict ▼"
    assert browser.js("location.hash") == "#sort=iou_2&dir=desc&page=1"
    assert browser.js("document.querySelectorAll('#worst tr').length") == 4  # the comparison view
    assert browser.js("[...document.querySelectorAll('#worst img, .plots img')]"
                      ".every(i => i.complete && i.naturalWidth > 0)")
    assert browser.js("document.querySelectorAll('#worst img').length") == 4 * (2 + 3 + 2)
    browser.screenshot(tmp_path / "comparison.png")
    shot = cv2.imread(str(tmp_path / "comparison.png"))
    assert shot is not None and shot.shape[0] > 1800 and shot.std() > 10

    t = time.perf_counter()
    browser.open(big_report[0].as_uri())
    assert time.perf_counter() - t < 10  # 10 000 rows: opens in a few seconds
    assert len(browser.js(ROWS)) == html_report.PAGE_SIZE
    _click(browser, "#next")
    _click(browser, "#next")
    assert browser.js("document.getElementById('page-info').textContent") == "page 3 of 100 (10000 of 10000 images)"
    browser.js("const f = document.getElementById('filter'); f.value = 'img_0001'; "
               "f.dispatchEvent(new Event('input'))")
    assert sorted(d2[0] for d2 in (_data(big_report[0].parent)["rows"][i] for i in browser.js(ROWS))) == \
        [f"img_{i:05d}.png" for i in range(10, 20)]
    browser.screenshot(tmp_path / "big.png")
    assert browser.errors == []
