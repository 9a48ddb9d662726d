"""`deploy run --ray` on a local 2-worker Ray cluster (started by the tests, torn down after): outputs
byte-identical to a local run (corrupt image and missing mask included), a worker killed mid-run
survived, a driver interrupted then resumed; and without Ray, the flag's install hint."""
import json
import os
import time
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.errors import DeployError
from deploy.tools import ray_run, report
from deploy.tools.run import run
from test_tools_e2e import compile_tiny, tiny_seg, vdsp_json

REPO = Path(__file__).resolve().parents[1]
VOLATILE = {"summary.json", "summary.md"}  # timings and the route; every other file must be identical


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny compiled model, 12 synthetic images (one unreadable, one without its mask) and the local run."""
    from deploy.data.synth import synth_dsb2018
    root = tmp_path_factory.mktemp("ray")
    (root / "vdsp.json").write_text(json.dumps(vdsp_json()))
    data = synth_dsb2018(root / "data", n=12, seed=1)
    names = sorted(p.name for p in (data / "images").iterdir())
    (data / "images" / names[3]).write_bytes(b"not an image")
    (data / "masks" / names[7]).unlink()
    e = {"prefix": compile_tiny(root, tiny_seg(), "tiny_seg"), "vdsp": root / "vdsp.json",
         "images": data / "images", "masks": data / "masks", "local": root / "local"}
    e["local_summary"] = run(e["images"], e["prefix"], e["vdsp"], e["local"], e["masks"], batch=2, num_threads=1,
                             progress=False)
    return e


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=80 << 20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def on_ray(env, out, **kw):
    return run(env["images"], env["prefix"], env["vdsp"], out, env["masks"], batch=2, num_threads=1, progress=False,
               ray="local", **kw)


def assert_workers_gone(ray):
    """ray.kill is asynchronous: the run's workers leave the actor table shortly after the run."""
    deadline = time.monotonic() + 30
    while [n for n in ray.util.list_named_actors() if n.startswith("segdeploy-run-")]:
        assert time.monotonic() < deadline, ray.util.list_named_actors()
        time.sleep(0.2)


def wait_dead(ray, actor):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{actor} still alive 30 s after ray.kill")


def assert_same_outputs(env, out, summary):
    ref = env["local"]
    names = {p.name for p in ref.iterdir()} - VOLATILE
    assert {p.name for p in out.iterdir()} - VOLATILE == names
    for name in sorted(names):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    for key in ("mean_iou", "mean_dice", "status_counts", "images", "scored"):
        assert summary[key] == env["local_summary"][key]
    assert summary["status_counts"] == {"no mask": 1, "ok": 10, "unreadable image": 1}


@pytest.mark.slow  # a Ray instance and two workers importing TVM
def test_ray_matches_local_run(env, cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ray_run, "CHUNK_BATCHES", 1)  # 6 chunks: both workers get several
    summary = on_ray(env, tmp_path / "out")
    assert "ray (local): 2 worker(s) on 1 node(s), 0 retried chunk(s), 0 worker(s) replaced" in capsys.readouterr().out
    assert summary["ray"]["workers"] == 2 and summary["ray"]["nodes"] == 1 and summary["ray"]["retries"] == 0
    assert summary["processed"] == 12
    assert_same_outputs(env, tmp_path / "out", summary)
    assert_workers_gone(cluster)  # the cluster stays up


@pytest.mark.slow
def test_ray_survives_a_killed_worker(env, cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ray_run, "CHUNK_BATCHES", 1)
    add = report.RowAppender.add
    killed = []

    def kill_one_worker(self, row):
        if not killed:
            name = sorted(n for n in cluster.util.list_named_actors() if n.startswith("segdeploy-run-"))[0]
            actor = cluster.get_actor(name)
            cluster.kill(actor)
            killed.append(name)
            wait_dead(cluster, actor)  # ray.kill is asynchronous: the chunks still queued must meet a dead worker
        add(self, row)

    monkeypatch.setattr(report.RowAppender, "add", kill_one_worker)
    summary = on_ray(env, tmp_path / "out")
    assert killed and summary["ray"]["retries"] >= 1 and summary["ray"]["replaced"] == 1
    assert f"{summary['ray']['retries']} retried chunk(s), 1 worker(s) replaced" in capsys.readouterr().out
    assert_same_outputs(env, tmp_path / "out", summary)


@pytest.mark.slow
def test_ray_resume_after_interrupted_driver(env, cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_run, "CHUNK_BATCHES", 1)
    add = report.RowAppender.add
    calls = []

    def interrupt_after_five(self, row):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(row)
        add(self, row)

    monkeypatch.setattr(report.RowAppender, "add", interrupt_after_five)
    with pytest.raises(KeyboardInterrupt):
        on_ray(env, tmp_path / "out")
    assert_workers_gone(cluster)  # the interrupted run stopped its workers
    monkeypatch.setattr(report.RowAppender, "add", add)
    assert len(report.read_rows(tmp_path / "out" / "results.csv")) == 5
    summary = on_ray(env, tmp_path / "out", resume=True)
    assert summary["resumed"] == 4 and summary["processed"] == 8  # the unreadable image is always redone
    assert_same_outputs(env, tmp_path / "out", summary)


@pytest.mark.slow
def test_perf_datalist_on_ray_matches_local(env, cluster, tmp_path, monkeypatch):
    """The npz route: `deploy perf --datalist … --ray` writes the local route's output_NNNNNN.npz byte for byte
    and skips the same unreadable input (image2npz left the corrupt image out; a corrupt npz is added)."""
    from click.testing import CliRunner
    from deploy.cli import cli
    from deploy.tools.image2npz import image2npz
    from deploy.tools.perf import PerfConfig, accuracy
    monkeypatch.setattr(ray_run, "CHUNK_BATCHES", 1)
    datalist = tmp_path / "list.txt"
    image2npz(env["images"], tmp_path / "npz", datalist)
    (tmp_path / "npz" / "broken.npz").write_bytes(b"not an npz")
    lines = datalist.read_text().splitlines()
    datalist.write_text("\n".join([*lines[:4], str(tmp_path / "npz" / "broken.npz"), *lines[4:]]) + "\n")
    cfg = PerfConfig(prefix=str(env["prefix"]), vdsp_params=str(env["vdsp"]), batch=2, num_threads=1)
    local = accuracy(cfg, datalist, tmp_path / "local", progress=False)
    res = CliRunner().invoke(cli, ["perf", "-m", str(env["prefix"]), "--vdsp_params", str(env["vdsp"]), "-b", "2",
                                    "--num-threads", "1", "--datalist", str(datalist), "--path_output",
                                    str(tmp_path / "ray"), "--json", str(tmp_path / "ray.json"), "--ray"])
    assert res.exit_code == 0, res.output
    assert "2 worker(s) on 1 node(s), 0 retried chunk(s)" in res.output
    on_ray = json.loads((tmp_path / "ray.json").read_text())
    assert on_ray["written"] == local["written"] == 11 and on_ray["ray"]["workers"] == 2
    assert on_ray["skipped"] == [list(s) for s in local["skipped"]] and "broken.npz" in local["skipped"][0][0]
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == [f"output_{i:06d}.npz" for i in range(12) if i != 4]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == names
    for name in names:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert_workers_gone(cluster)


@pytest.mark.slow
def test_ray_stalled_worker_stops_the_run(env, cluster, tmp_path, monkeypatch):
    """An input whose read never returns (a FIFO without a writer, like a file on a dead mount) stops the
    run with an error after STALL_S instead of hanging, once the chunks before it are written."""
    from deploy.tools.image2npz import image2npz
    from deploy.tools.perf import PerfConfig, accuracy
    monkeypatch.setattr(ray_run, "CHUNK_BATCHES", 1)
    monkeypatch.setattr(ray_run, "STALL_S", 15.0)  # above the workers' start-up (TVM import) on a loaded CI box
    datalist = tmp_path / "list.txt"
    image2npz(env["images"], tmp_path / "npz", datalist)
    os.mkfifo(tmp_path / "blocked.npz")
    datalist.write_text("\n".join([*datalist.read_text().splitlines()[:3], str(tmp_path / "blocked.npz")]) + "\n")
    cfg = PerfConfig(prefix=str(env["prefix"]), vdsp_params=str(env["vdsp"]), batch=2, num_threads=1)
    with pytest.raises(DeployError, match="no chunk of 1 batch"):
        accuracy(cfg, datalist, tmp_path / "out", progress=False, ray="local")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["output_000000.npz", "output_000001.npz"]
    assert_workers_gone(cluster)


def test_perf_ray_needs_the_datalist(tmp_path):
    from click.testing import CliRunner
    from deploy.cli import cli
    res = CliRunner().invoke(cli, ["perf", "-m", str(tmp_path / "mod"), "--ray"])
    assert res.exit_code == 2 and "--ray runs the accuracy mode" in res.output


def test_ray_flag_without_ray_names_the_extra(tmp_path):
    """Ray masked: vsx_inference.py --ray stops at once with the install hint (no model is needed for that)."""
    code = ("import runpy, sys; sys.modules['ray'] = None; sys.argv = ['vsx_inference.py', *sys.argv[1:]]; "
            "runpy.run_path('vsx_inference.py', run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", code, "--file_path", str(tmp_path), "--model_prefix_path",
                          str(tmp_path / "mod"), "--vdsp_params_info", str(tmp_path / "v.json"), "--ray"],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2, res.stdout + res.stderr
    assert "pip install 'segdeploy[cluster]'" in res.stderr and "Traceback" not in res.stderr


def test_slots_cut_every_alive_node():
    nodes = [{"NodeID": "a", "Alive": True, "Resources": {"CPU": 4.0}},
             {"NodeID": "b", "Alive": True, "Resources": {"CPU": 2.0}},
             {"NodeID": "c", "Alive": False, "Resources": {"CPU": 8.0}},
             {"NodeID": "d", "Alive": True, "Resources": {}}]
    assert ray_run.slots(nodes, None) == [("a", 4), ("b", 2)]
    assert ray_run.slots(nodes, 2) == [("a", 2), ("a", 2), ("b", 2)]
    assert ray_run.slots(nodes, 3) == [("a", 3)]
    with pytest.raises(DeployError, match="no node with 5 CPU"):
        ray_run.slots(nodes, 5)


def test_steady_rate_leaves_each_workers_start_up_out():
    # worker A: chunks of 4 done at 10, 12, 14 s; worker B (a second generation of a slot): at 11, 13 s
    assert ray_run.steady_rate([[(14.0, 4), (10.0, 4), (12.0, 4)], [(11.0, 4), (13.0, 4)]]) == 2.0 + 2.0
    assert ray_run.steady_rate([[(10.0, 4)]]) is None and ray_run.steady_rate([]) is None


def test_suite_bytes_are_checked_on_arrival(tmp_path):
    prefix = tmp_path / "src" / "mod"
    prefix.parent.mkdir()
    prefix.with_name("mod.so").write_bytes(b"\x7fELF library")
    prefix.with_name("mod.json").write_bytes(b'{"name": "m"}')
    suite = ray_run.Suite.read(prefix)
    (tmp_path / "a").mkdir()
    got = suite.unpack(tmp_path / "a")
    assert got.with_name("mod.so").read_bytes() == b"\x7fELF library" and got.name == "mod"
    bad = ray_run.Suite(suite.name, suite.so[:-1], suite.meta, suite.so_sha256, suite.meta_sha256)
    (tmp_path / "b").mkdir()
    with pytest.raises(DeployError, match="SHA-256 mismatch"):
        bad.unpack(tmp_path / "b")
    assert not list((tmp_path / "b").iterdir())  # nothing written from corrupted bytes


@pytest.mark.slow
def test_bench_ray_rows(env, cluster, tmp_path, monkeypatch):
    """The bench's Ray rows: 1 and 2 workers splitting the cores, each Ray run beside a local run of the same
    images, their ratio, and the same mean IoU on both routes (the test's Ray instance is used, not stopped)."""
    from deploy.bench import stream
    from deploy.tools import bench_stream
    monkeypatch.setattr(ray_run, "CHUNK_BATCHES", 1)
    monkeypatch.setattr("deploy.host.usable_cores", lambda: 2)  # the cluster fixture's 2 CPUs
    rows = bench_stream.run_ray(tmp_path, env["prefix"], env["vdsp"], env["images"], env["masks"], batch=2, images=12,
                                repeats=1)
    assert [r["workers"] for r in rows] == [1, 2] and [r["model_threads"] for r in rows] == [2, 1]
    for r in rows:
        assert r["images"] == 12 and r["startup_s"] > 0 and r["steady_ips"] > 0 and r["local_ips"] > 0
        assert r["ratios"] == [r["ratio"]] and r["ratio"] == pytest.approx(r["steady_ips"] / r["local_ips"])
        assert r["mean_iou"] == env["local_summary"]["mean_iou"] and r["same_mean_iou"]
    assert cluster.is_initialized()
    md = stream._ray_markdown(rows)
    assert md.count("\n| ") >= 3 and "Ray img/s" in md and "≥ 90% (1 worker)" in md
