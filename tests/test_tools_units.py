"""The tools' pieces without a compiled model: metrics, results/summary files, the streaming
pipeline, perf's argument parsing, image2npz and eval on hand-made outputs."""
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deploy.cli import cli
from deploy.errors import DeployError
from deploy.runtime.stream import Stream
from deploy.data import metrics
from deploy.tools import report
from deploy.tools.perf import _cpu_seconds, parse_ints, parse_shapes


# ------------------------------------------------------------------------------------- metrics
def test_iou_dice_values_and_empty_case():
    p = np.zeros((4, 4), np.uint8)
    g = np.zeros((4, 4), np.uint8)
    assert metrics.iou_dice(p, g) == (1.0, 1.0)  # both empty: defined as a perfect score
    p[0, :2] = 1
    g[0, 1:3] = 1
    iou, dice = metrics.iou_dice(p, g)
    assert iou == pytest.approx(1 / 3) and dice == pytest.approx(0.5)
    assert metrics.iou_dice(p, np.zeros_like(g)) == (0.0, 0.0)


def test_unetzoo_thresholds_are_inclusive():
    gt = np.array([[124, 125], [0, 255]], np.uint8)
    prob = np.array([[0.4999, 0.5], [0.0, 1.0]], np.float32)
    assert metrics.binarize_gt(gt, (2, 2)).tolist() == [[False, True], [False, True]]
    assert metrics.predict(prob).labels.tolist() == [[0, 1], [0, 1]]
    assert metrics.unetzoo_scores(prob, gt) == (1.0, 1.0)


def test_gt_is_resized_bilinearly_to_the_prediction():
    gt = np.zeros((8, 8), np.uint8)
    gt[:, 4:] = 255
    g = metrics.binarize_gt(gt, (4, 4))
    assert g.tolist() == [[False, False, True, True]] * 4
    expected = cv2.resize(gt, (4, 4), interpolation=cv2.INTER_LINEAR) >= 125
    assert (g == expected).all()


def test_predict_shapes_sigmoid_argmax_and_resize_back():
    prob = np.full((1, 1, 2, 2), 0.7, np.float32)
    pred = metrics.predict(prob)
    assert pred.labels.shape == (2, 2) and pred.prob is not None
    assert metrics.predict(np.full((1, 2, 2), -3.0), sigmoid=True).labels.sum() == 0
    scores = np.zeros((3, 2, 2), np.float32)
    scores[2, 0, 0] = 1
    scores[1, 1, 1] = 1
    multi = metrics.predict(scores)
    assert multi.prob is None and multi.labels.tolist() == [[2, 0], [0, 1]]
    assert multi.labels_at((4, 4)).tolist()[0] == [2, 2, 0, 0]
    assert pred.labels_at((5, 3)).shape == (5, 3)


def test_confusion_matrix_scores_and_ignore():
    cm = metrics.ConfusionMatrix(2, ignore_index=255)
    cm.update(np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 255, 1]))
    assert cm.matrix.tolist() == [[1, 1], [0, 2]]
    s = cm.scores()
    assert s["overall_acc"] == pytest.approx(3 / 4)
    assert s["mean_acc"] == pytest.approx((1 / 2 + 1) / 2)
    assert s["class_iou"] == pytest.approx([1 / 2, 2 / 3])
    assert s["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert s["freqw_acc"] == pytest.approx(2 / 4 * 1 / 2 + 2 / 4 * 2 / 3)


# -------------------------------------------------------------------------------------- report
def test_results_csv_round_trip_and_torn_line(tmp_path):
    rows = [report.Row("b.png", report.OK, 1 / 3, 0.5, "b.png"),
            report.Row("a.png", report.BAD_IMAGE, detail="cannot read image a.png: file is empty, really")]
    path = tmp_path / "results.csv"
    report.write_rows(path, rows)
    assert path.read_text().splitlines()[0] == "image,mask,status,iou,dice,detail"
    back = report.read_rows(path)
    assert list(back) == ["a.png", "b.png"] and back["b.png"].iou == 1 / 3  # full precision kept
    with open(path, "a") as f:
        f.write("c.png,c.png,ok,0.5")  # killed mid-line
    assert list(report.read_rows(path)) == ["a.png", "b.png"]
    s = report.summarize(list(back.values()))
    assert s["mean_iou"] == pytest.approx(1 / 3) and s["scored"] == 1 and s["status_counts"] == {
        report.BAD_IMAGE: 1, report.OK: 1}
    paths = report.write_summary(tmp_path, s, list(back.values()), "t")
    assert json.loads(paths["json"].read_text())["mean_iou"] == pytest.approx(1 / 3)
    assert "unreadable image" in paths["md"].read_text()
    assert cv2.imread(str(paths["hist"])) is not None


# -------------------------------------------------------------------------------------- stream
class Boom(DeployError):
    pass


def _load(i):
    if i % 5 == 3:
        raise Boom(f"bad item {i}")
    return np.full((2, 3), i, np.float32), i * 10


def test_stream_order_batches_and_skipped_items():
    sizes = []

    def infer(xs):
        sizes.append(len(xs[0]))
        return [xs[0] * 2, xs[0][:, :1]]

    stream = Stream(infer, _load, lambda item, ctx, outs: (ctx, [o.shape for o in outs], float(outs[0][0, 0, 0])),
                    batch=4, workers=3)
    done = list(stream.run(range(13)))
    assert [d.item for d in done] == list(range(13))
    bad = [d.item for d in done if d.error is not None]
    assert bad == [3, 8] and all(isinstance(d.error, Boom) for d in done if d.error)
    good = [d for d in done if d.error is None]
    assert all(d.value == (d.item * 10, [(1, 2, 3), (1, 1, 3)], 2.0 * d.item) for d in good)
    assert sum(sizes) == 11 and max(sizes) == 4  # errors never reach the model


def _join_threads_started_since(existing: set[threading.Thread]) -> None:
    """Wait for the stream's own threads to end (the timeout only bounds a hang, which then fails)."""
    for t in set(threading.enumerate()) - existing:
        t.join(timeout=60)


def test_stream_model_error_propagates_and_threads_stop():
    before = threading.active_count()
    existing = set(threading.enumerate())

    def infer(xs):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        list(Stream(infer, lambda i: (np.zeros(2), None), batch=2).run(range(10)))
    _join_threads_started_since(existing)
    assert threading.active_count() <= before


def test_stream_is_bounded_and_stops_when_closed():
    loaded = []
    stream = Stream(lambda xs: [xs[0]], lambda i: (loaded.append(i) or np.zeros(1), None), batch=2, workers=2,
                    depth=4)
    existing = set(threading.enumerate())
    it = stream.run(range(100_000))
    next(it)
    # A pause for an unbounded pipeline to show itself; a bounded one stays under the bound however
    # long it runs, so the machine's load can only make this probe weaker, never make it fail.
    time.sleep(0.3)
    assert len(loaded) < 20  # decoding runs only a bounded distance ahead of the consumer
    it.close()
    n = len(loaded)
    _join_threads_started_since(existing)  # after this nothing is left that could load more
    assert len(loaded) <= n + 4


def test_stream_turns_opencv_threads_off_while_running_and_restores_them():
    import cv2
    before = cv2.getNumThreads()
    seen = []
    stream = Stream(lambda xs: [xs[0]], lambda i: (seen.append(cv2.getNumThreads()) or np.zeros(1), None), batch=2)
    it = stream.run(range(4))
    next(it)
    inner = Stream(lambda xs: [xs[0]], lambda i: (np.zeros(1), None)).run(range(2))
    list(inner)  # a second stream ending first must not switch OpenCV's threads back on under the first
    assert cv2.getNumThreads() == 1
    list(it)
    assert set(seen) == {1} and cv2.getNumThreads() == before


# ---------------------------------------------------------------------------------------- perf
@pytest.mark.parametrize("text, shapes", [
    ("[3,96,96]", [(3, 96, 96)]), ("3,96,96", [(3, 96, 96)]), ("(3, 96, 96)", [(3, 96, 96)]),
    ("[[3,96,96],[1,10]]", [(3, 96, 96), (1, 10)]), (None, None)])
def test_parse_shapes(text, shapes):
    assert parse_shapes(text) == shapes


def test_parse_shapes_and_percentiles_errors():
    with pytest.raises(DeployError, match="-s/--shape"):
        parse_shapes("[3,x,96]")
    with pytest.raises(DeployError, match="positive"):
        parse_shapes("[3,0,96]")
    assert parse_ints("[50,90,95,99]", "p") == (50, 90, 95, 99)
    assert parse_ints("50, 99.9", "p") == (50, 99)


def test_perf_cpu_clock_counts_finer_than_a_short_run():
    """perf's CPU clock steps far below a one-request run: os.times() counted 10 ms ticks, and a run
    that used a few ms of CPU read a silent 0.0 %. A step is CPU time between two readings, so the
    machine's load cannot make it longer."""
    steps: list[float] = []
    last = _cpu_seconds()
    while len(steps) < 5:
        now = _cpu_seconds()
        if now != last:
            steps.append(now - last)
            last = now
    assert min(steps) < 1e-3


# ------------------------------------------------------------------------------------ image2npz
def _write_images(folder: Path, n: int, ext: str = ".png", seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img{n - i:02d}{ext}"  # written out of order on purpose
        cv2.imwrite(str(p), rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8))
        paths.append(p)
    return paths


def test_image2npz_keys_dtype_shape_sorted_and_corrupt(tmp_path):
    imgs = _write_images(tmp_path / "images", 4)
    _write_images(tmp_path / "images", 1, ext=".jpg")
    (tmp_path / "images" / "img00.png").write_bytes(b"")  # corrupt: reported, counted, left out
    res = CliRunner().invoke(cli, ["image2npz", "--dataset_path", str(tmp_path / "images"), "--target_path",
                                   str(tmp_path / "npz"), "--text_path", str(tmp_path / "list.txt"),
                                   "--suffix", "png"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable image" in res.output and "img00.png" in res.output
    lines = (tmp_path / "list.txt").read_text().splitlines()
    assert [Path(s).name for s in lines] == ["img01.npz", "img02.npz", "img03.npz", "img04.npz"]
    assert all(Path(s).is_absolute() for s in lines)
    for line in lines:
        with np.load(line) as z:
            assert z.files == ["input_0"]
            x = z["input_0"]
        src = cv2.cvtColor(cv2.imread(str(tmp_path / "images" / (Path(line).stem + ".png"))), cv2.COLOR_BGR2RGB)
        assert x.dtype == np.uint8 and x.shape == (3,) + src.shape[:2]
        assert (x == src.transpose(2, 0, 1)).all()  # CHW RGB at the original size
    assert len(imgs) == 4
    res = CliRunner().invoke(cli, ["image2npz", "--dataset_path", str(tmp_path / "images"), "--target_path",
                                   str(tmp_path / "npz2"), "--text_path", str(tmp_path / "all.txt")])
    assert isinstance(res.exception, DeployError) and "img01.npz" in str(res.exception)  # .png/.jpg collide


# ----------------------------------------------------------------------------------------- eval
@pytest.fixture()
def eval_set(tmp_path):
    """Three images with masks, their input npz datalist, and outputs both by position and by name."""
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "by_pos").mkdir()
    (tmp_path / "by_name").mkdir()
    lines = []
    probs = {}
    for i, stem in enumerate(["c", "a", "b"]):
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "images" / f"{stem}.png"), img)
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 2 + i:10] = 255
        cv2.imwrite(str(tmp_path / "masks" / f"{stem}.png"), mask)
        prob = np.zeros((1, 1, 8, 8), np.float32)
        prob[0, 0, 2:6, 1:5 + i] = 0.9
        probs[stem] = prob
        lines.append(str(tmp_path / "npz" / f"{stem}.npz"))
        np.savez(tmp_path / "by_pos" / f"output_{i:06d}.npz", output_0=prob)
        np.savez(tmp_path / "by_name" / f"{stem}.npz", output_0=prob)
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path, probs


def _eval(tmp, out, *extra):
    return CliRunner().invoke(cli, ["eval", "--src_dir", str(tmp / "images"), "--gt_dir", str(tmp / "masks"),
                                    "--input_npz_path", str(tmp / "list.txt"), "--out_npz_dir", str(tmp / out),
                                    "--input_shape", "8", "8", "--draw_dir", str(tmp / f"draw_{out}"), *extra])


def test_eval_by_position_and_by_name_agree(eval_set):
    tmp, probs = eval_set
    pos = _eval(tmp, "by_pos", "--vamp_flag")
    name = _eval(tmp, "by_name")
    assert pos.exit_code == 0 and name.exit_code == 0, pos.output + name.output
    s_pos = json.loads((tmp / "draw_by_pos" / "summary.json").read_text())
    s_name = json.loads((tmp / "draw_by_name" / "summary.json").read_text())
    expected = np.mean([metrics.unetzoo_scores(probs[s][0, 0], cv2.imread(str(tmp / "masks" / f"{s}.png"), 0))[0]
                        for s in probs])
    assert s_pos["mean_iou"] == pytest.approx(expected, abs=1e-12)
    assert s_name["mean_iou"] == pytest.approx(expected, abs=1e-12)
    assert s_pos["confusion"]["mean_iou"] == pytest.approx(s_name["confusion"]["mean_iou"])
    names = sorted(p.name for p in (tmp / "draw_by_pos").iterdir())
    assert names == ["a.png", "a_overlay.png", "b.png", "b_overlay.png", "c.png", "c_overlay.png", "iou_hist.png",
                     "results.csv", "summary.json", "summary.md"]
    assert cv2.imread(str(tmp / "draw_by_pos" / "a_overlay.png")).shape == (16, 16, 3)
    # by name without the flag finds nothing in a vamp output folder: every image is reported
    miss = _eval(tmp, "by_pos")
    assert miss.exit_code == 0 and "3 image(s) not scored: 3 missing output" in miss.output


def test_eval_reports_missing_outputs_and_masks(eval_set):
    tmp, _ = eval_set
    (tmp / "by_pos" / "output_000001.npz").unlink()
    (tmp / "masks" / "b.png").unlink()
    res = _eval(tmp, "by_pos", "--vamp_flag")
    assert res.exit_code == 0, res.output
    s = json.loads((tmp / "draw_by_pos" / "summary.json").read_text())
    assert s["status_counts"] == {"missing output": 1, "no mask": 1, "ok": 1}
    rows = report.read_rows(tmp / "draw_by_pos" / "results.csv")
    assert rows["a.png"].status == "missing output" and rows["b.png"].status == "no mask"


def test_eval_multiclass_confusion(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "out").mkdir()
    gt = np.zeros((4, 4), np.uint8)
    gt[:, 2:] = 2
    gt[0, 0] = 255  # ignored
    cv2.imwrite(str(tmp_path / "images" / "x.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "x.png"), gt)
    scores = np.zeros((1, 3, 4, 4), np.float32)
    scores[0, 2, :, 1:] = 1  # predicts class 2 on columns 1..3
    scores[0, 0, :, 0] = 1
    np.savez(tmp_path / "out" / "x.npz", output_0=scores)
    (tmp_path / "list.txt").write_text(str(tmp_path / "x.npz") + "\n")
    res = CliRunner().invoke(cli, ["eval", "--src_dir", str(tmp_path / "images"), "--gt_dir", str(tmp_path / "masks"),
                                   "--input_npz_path", str(tmp_path / "list.txt"), "--out_npz_dir",
                                   str(tmp_path / "out"), "--draw_dir", str(tmp_path / "d"), "--num-classes", "3"])
    assert res.exit_code == 0, res.output
    c = json.loads((tmp_path / "d" / "summary.json").read_text())["confusion"]
    # 15 scored pixels: class 0 → 3 right, 4 wrong (column 1); class 2 → 8 right
    assert c["overall_acc"] == pytest.approx(11 / 15)
    assert c["class_iou"][1] is None  # absent from GT and prediction
    assert c["class_iou"][0] == pytest.approx(3 / 7) and c["class_iou"][2] == pytest.approx(8 / 12)
    assert c["mean_iou"] == pytest.approx((3 / 7 + 8 / 12) / 2)


def test_histogram_title_fits_its_image(tmp_path):
    """A long run title wraps instead of running off the 640-pixel image (matplotlib lays it out)."""
    from deploy.tools.plots import iou_histogram
    title = "workspace/deploy_weights/official_unet3p_ds_int8_percentile_run_2026_12_03: per-image IoU (4000 images)"
    for i, long in enumerate((title, "/data/runs/" * 12 + title)):
        img = cv2.imread(str(iou_histogram([("int8", [0.5, 0.9, 0.91])], tmp_path / f"h{i}.png", long)))
        assert img.shape == (400, 640, 3)
        assert (img[:, -3:] < 200).sum() == 0 and (img[:3] < 200).sum() == 0  # nothing touches the edges
        assert (img[:40, 20:620] < 100).any()  # the title is drawn at the top
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically
