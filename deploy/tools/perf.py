"""`deploy perf` (the vendor's `vamp` profiler).

Benchmark mode: `-i` instances (threads, each with its own loaded model) in each of `-p` processes
(spawned; each dies with its parent, even a `kill -9`ed one: deploy.host.die_with_parent) send requests
of `-b` images. A request is timed from its raw input (uint8 planar image of
shape `-s`, like the vendor's device input) through the vdsp preprocessing to the model's outputs
(end-to-end latency), and around the model call alone (model latency).
`--queue_size 0` is latency mode: each instance preprocesses and infers one request at a time.
`--queue_size Q > 0` is throughput mode: a preprocessing thread per instance keeps up to Q prepared
requests waiting for the model, so end-to-end latency includes the queue wait.
Before any worker is spawned or model loaded, the parent checks the options against the suite and
this machine (`preflight`: at most MAX_INSTANCES = 256 instances in all, the memory every instance
needs); after the last warm-up request (or the first measured one, with `--warmup 0`) the run is
refused when `--iterations` would take longer than `--max-seconds` (default one hour), and a run
estimated at over a minute says how long it will take.
Reports throughput (qps = images per second over the measured window), latency avg/min/max/pN
in µs per request, CPU utilisation and peak memory; `--json FILE` writes them for machines.

Accuracy mode (`--datalist LIST --path_output DIR`): every npz on the list (key `input_0`, uint8
CHW RGB from image2npz, other inputs `input_1..`) is preprocessed and inferred, and its outputs are
written to `DIR/output_%06d.npz` (line i → output_{i:06d}.npz; keys `output_0..N`, batch dim kept).
`--ray [ADDRESS]` runs it on a Ray cluster (deploy.tools.ray_run) and writes the same files, byte for byte.
"""
from __future__ import annotations

import ast
import math
import multiprocessing as mp
import os
import queue
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from deploy.errors import DeployError
from deploy.runtime.profile import table as profile_table
from deploy.host import check_memory, die_with_parent, usable_cores
from deploy.io import atomic_write_json
from deploy.preprocess import planar_to_hwc
from deploy.tools.common import WORKERS, check_writable, load_model, read_datalist, vdsp_preprocessor, warn_device
from deploy.tools.ray_run import describe, ray_option

DEFAULT_PERCENTILES = (50, 90, 95, 99)


def parse_shapes(text: str | None) -> list[tuple[int, ...]] | None:
    """`[3,96,96]`, `3,96,96`, `(3, 96, 96)` → [(3, 96, 96)]; `[[3,96,96],[1,10]]` → two inputs."""
    if text is None or not str(text).strip():
        return None
    s = str(text).strip()
    try:
        value = ast.literal_eval(s if s[0] in "[(" else f"[{s}]")
    except (ValueError, SyntaxError):
        raise DeployError(f"-s/--shape: cannot read {text!r}; write it like [3,96,96] or [[3,96,96],[1,10]]") from None
    value = list(value) if isinstance(value, (list, tuple)) else [value]
    shapes = [tuple(v) for v in value] if value and isinstance(value[0], (list, tuple)) else [tuple(value)]
    for sh in shapes:
        if not sh or not all(isinstance(d, int) and d > 0 for d in sh):
            raise DeployError(f"-s/--shape: expected positive integer dims, got {list(sh)} in {text!r}")
    return shapes


def parse_ints(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    s = str(text).strip().strip("[]()")
    try:
        return tuple(int(float(v)) for v in s.replace(" ", ",").split(",") if v)
    except (ValueError, OverflowError):
        raise DeployError(f"{what}: expected numbers like [50,90,95,99], got {text!r}") from None


def parse_percentiles(text: str | None) -> tuple[int, ...] | None:
    """--percentiles, each in 0..100: checked before the benchmark, not when the report is made."""
    values = parse_ints(text, "--percentiles")
    bad = [v for v in values or () if not 0 <= v <= 100]
    if bad:
        raise DeployError(f"--percentiles: each must be in 0..100, got {bad[0]} in {text!r}")
    return values


@dataclass
class PerfConfig:
    prefix: str
    vdsp_params: str | None = None
    instances: int = 1
    processes: int = 1
    batch: int = 1
    shapes: list[tuple[int, ...]] | None = None
    iterations: int = 100
    warmup: int = 5
    percentiles: tuple[int, ...] = DEFAULT_PERCENTILES
    queue_size: int = 1
    num_threads: int | None = None
    seed: int = 0
    max_seconds: float = 3600.0  # check_duration: the measured requests of one instance may take this long

    def threads_per_instance(self) -> int | None:
        if self.num_threads:
            return self.num_threads
        n = self.instances * self.processes
        return None if n == 1 else max(1, usable_cores() // n)


# --------------------------------------------------------------------------------------- inputs
class Inputs:
    """Builds requests: raw inputs (what the device would receive) and their preprocessing."""

    POOL = 4  # distinct requests, reused: no RNG in the timed loop

    def __init__(self, model: Any, cfg: PerfConfig):
        self.model = model
        infos = list(model.inputs)
        self.shapes, self.pre = resolve_inputs(model, cfg)
        rng = np.random.default_rng(cfg.seed)
        self.raw = []
        for _ in range(self.POOL):
            req = []
            for k, sh in enumerate(self.shapes):
                if k == 0 and self.pre is not None:
                    req.append(rng.integers(0, 256, (cfg.batch,) + tuple(sh), dtype=np.uint8))
                else:
                    dt = np.dtype(infos[k].dtype)
                    req.append(rng.standard_normal((cfg.batch,) + tuple(sh)).astype(dt))
            self.raw.append(req)

    def dtype_names(self) -> list[str]:
        return ["u1" if (k == 0 and self.pre is not None) else str(np.dtype(i.dtype))
                for k, i in enumerate(self.model.inputs)]

    def request(self, n: int) -> list[np.ndarray]:
        return self.raw[n % len(self.raw)]

    def prepare(self, raw: list[np.ndarray]) -> list[np.ndarray]:
        if self.pre is None:
            return raw
        return [np.stack([self.pre(p) for p in raw[0]])] + list(raw[1:])


def resolve_inputs(model: Any, cfg: PerfConfig) -> tuple[list[tuple[int, ...]], Any]:
    """The raw input shapes of a request (from -s, the vdsp params or the model) and the
    preprocessing, checked against the model and against this machine's memory: what the parent
    checks before it spawns workers (`model` may be a deploy.runtime.model.SuiteInfo)."""
    infos = list(model.inputs)
    pre = None
    if cfg.vdsp_params:
        vcfg, vdsp = vdsp_preprocessor(cfg.vdsp_params)
        pre = lambda planar: vdsp.from_rgb(planar_to_hwc(planar))  # noqa: E731
        first = (3,) + (vcfg.in_size or vdsp.out_size or _concrete(infos[0], cfg)[1:])
    else:
        first = _concrete(infos[0], cfg)
    shapes = list(cfg.shapes or [])
    if not shapes:
        shapes = [first] + [_concrete(i, cfg) for i in infos[1:]]
    if len(shapes) != len(infos):
        raise DeployError(f"-s gives {len(shapes)} input shape(s) but {cfg.prefix} has {len(infos)} input(s): "
                          + ", ".join(i.name for i in infos))
    if pre is not None and shapes[0][0] != 3:
        raise DeployError(f"-s {list(shapes[0])}: with --vdsp_params the first input is a 3-channel image [3,H,W]")
    _check_memory(model, cfg, shapes, Inputs.POOL)
    return shapes, pre


PROCESS_MIB = 256   # what one more worker process costs before it loads anything (Python, numpy, TVM)


def _check_memory(model: Any, cfg: PerfConfig, shapes: list[tuple[int, ...]], pool: int) -> None:
    """Every instance of every process holds its model (the library, weights inside), `pool` raw
    requests, up to queue_size + 1 prepared ones and the outputs of one; every process costs
    PROCESS_MIB: refuse a -b/-s/-i/-p that cannot fit before allocating or spawning any of it."""
    n = cfg.batch
    raw = sum(n * float(np.prod(sh)) * 4 for sh in shapes)
    prepared = sum(n * float(np.prod([d for d in i.shape[1:] if isinstance(d, int)])) * 4 for i in model.inputs)
    outputs = sum(n * float(np.prod([d for d in o.shape[1:] if isinstance(d, int)])) * 4 for o in model.outputs)
    library = _library_bytes(model)
    per_instance = pool * raw + (cfg.queue_size + 1) * prepared + outputs + library
    total = per_instance * cfg.instances * cfg.processes + (cfg.processes - 1) * PROCESS_MIB * 2**20
    check_memory(total, f"-b {n} with input shape(s) {[list(s) for s in shapes]} "
                        f"({cfg.instances * cfg.processes} instance(s))", "use a smaller -b, -s, -i or -p")


def _library_bytes(model: Any) -> float:
    """The size of the model's library: its weights, which every loaded instance holds in memory."""
    path = getattr(model, "so_path", None)
    try:
        return float(os.path.getsize(path)) if path else 0.0
    except OSError:
        return 0.0


def _concrete(info: Any, cfg: PerfConfig) -> tuple[int, ...]:
    dims = tuple(info.shape)[1:]
    if not all(isinstance(d, int) for d in dims):
        raise DeployError(f"input {info.name!r} of {cfg.prefix} has a symbolic shape {list(info.shape)}; "
                          "give it with -s")
    return dims


# ------------------------------------------------------------------------------------ benchmark
def _instance(cfg: PerfConfig, barrier: Any, out: dict, model: Any, announce: bool = True) -> None:
    """One instance with its own model: warm up, wait for every instance, run the measured requests.
    `announce`: this instance prints the duration estimate (check_duration)."""
    from deploy.runtime.stream import batch_runner
    inputs = Inputs(model, cfg)
    infer = batch_runner(model)
    for n in range(cfg.warmup):
        t0 = time.perf_counter()
        infer(inputs.prepare(inputs.request(n)))
        if n == 0:
            check_duration(cfg, time.perf_counter() - t0, False, "--warmup", cfg.warmup)
        if n == cfg.warmup - 1:  # the last warm-up request: the first ones pay one-time costs
            check_duration(cfg, time.perf_counter() - t0, announce)
    e2e, lat = np.zeros(cfg.iterations), np.zeros(cfg.iterations)
    barrier.wait()
    start, cpu_start = time.monotonic(), _cpu_seconds()
    if cfg.queue_size <= 0:
        for n in range(cfg.iterations):
            t0 = time.perf_counter()
            xs = inputs.prepare(inputs.request(n))
            t1 = time.perf_counter()
            infer(xs)
            t2 = time.perf_counter()
            e2e[n], lat[n] = t2 - t0, t2 - t1
            if n == 0 and cfg.warmup == 0:
                check_duration(cfg, e2e[0], announce)
    else:
        q: queue.Queue = queue.Queue(cfg.queue_size)
        failed: list[BaseException] = []
        stop = threading.Event()

        def produce() -> None:
            try:
                for n in range(cfg.iterations):
                    t0 = time.perf_counter()
                    item = (t0, inputs.prepare(inputs.request(n)))
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as e:  # surfaced below instead of hanging the consumer
                failed.append(e)
                q.put(None)

        th = threading.Thread(target=produce, daemon=True)
        th.start()
        try:
            for n in range(cfg.iterations):
                got = q.get()
                if got is None:
                    raise failed[0]
                t0, xs = got
                t1 = time.perf_counter()
                infer(xs)
                t2 = time.perf_counter()
                e2e[n], lat[n] = t2 - t0, t2 - t1
                if n == 0 and cfg.warmup == 0:
                    check_duration(cfg, lat[0], announce)
        finally:
            stop.set()
            th.join()
    out.update(start=start, cpu_start=cpu_start, end=time.monotonic(), e2e=e2e, model=lat, shapes=inputs.shapes,
               dtypes=inputs.dtype_names())


def _run_instances(cfg: PerfConfig, barrier: Any, first_model: Any = None, announce: bool = True) -> dict:
    """All instances of one process, as threads; returns their timings and this process's usage.
    `announce`: its first instance prints the duration estimate (one process of -p N does)."""
    results = [{} for _ in range(cfg.instances)]
    errors: list[BaseException] = []

    # loaded one after the other, before any thread starts (a first TVM import is not thread-safe)
    models = [first_model or load_model(cfg.prefix, cfg.threads_per_instance())]
    models += [load_model(cfg.prefix, cfg.threads_per_instance()) for _ in range(cfg.instances - 1)]

    def target(k: int) -> None:
        try:
            _instance(cfg, barrier, results[k], models[k], announce=announce and k == 0)
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(k,), daemon=True) for k in range(cfg.instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return {"instances": results, "cpu_s": _cpu_seconds() - min(r["cpu_start"] for r in results),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu_seconds() -> float:
    """This process's CPU time, all threads: CLOCK_PROCESS_CPUTIME_ID counts in nanoseconds on Linux,
    where os.times() counts 10 ms ticks and read 0 over a short run."""
    return time.process_time()


def _cpu_percent(cpu_s: float, wall_s: float) -> float | None:
    """CPU time over the measured window in % of one core; None (reported as n/a) when the run used
    fewer than 10 steps of the CPU clock, too few to tell a value from zero."""
    steps = cpu_s / time.get_clock_info("process_time").resolution
    return 100.0 * cpu_s / wall_s if steps >= 10 else None


def _worker(cfg: PerfConfig, barrier: Any, results: Any, parent_pid: int, index: int = 0) -> None:
    die_with_parent(parent_pid)
    try:
        results.put(("ok", _run_instances(cfg, barrier, announce=index == 0)))
    except BaseException as e:
        barrier.abort()
        results.put(("error", f"{type(e).__name__}: {e}"))


def _stats(values_s: np.ndarray, percentiles: tuple[int, ...]) -> dict:
    us = np.asarray(values_s) * 1e6
    d = {"avg": float(us.mean()), "min": float(us.min()), "max": float(us.max())}
    d.update({f"p{p}": float(np.percentile(us, p)) for p in percentiles})
    return d


MAX_INSTANCES = 256   # -i x -p: each instance is a thread with its own model; more measure only contention


def preflight(cfg: PerfConfig) -> None:
    """Everything a worker would find wrong, found in the parent before any worker is spawned or any
    model instance loaded: the counts, the suite (files, description, library digest), the input
    shapes against the model and the memory all instances need."""
    from deploy.runtime.model import describe_suite
    from deploy.runtime.suite import check_library
    if min(cfg.instances, cfg.processes, cfg.batch, cfg.iterations) < 1:
        raise DeployError("-i, -p, -b and --iterations must be at least 1")
    if cfg.instances * cfg.processes > MAX_INSTANCES:
        raise DeployError(f"-i {cfg.instances} x -p {cfg.processes} = {cfg.instances * cfg.processes} model instances: "
                          f"at most {MAX_INSTANCES} (each loads its own model); use fewer")
    if not math.isfinite(cfg.max_seconds) or cfg.max_seconds <= 0:
        raise DeployError(f"--max-seconds {cfg.max_seconds!r}: must be a positive number")
    suite = describe_suite(cfg.prefix)
    check_library(suite.so_path, suite.meta)
    resolve_inputs(suite, cfg)


def check_duration(cfg: PerfConfig, request_s: float, announce: bool = True, option: str = "--iterations",
                   count: int | None = None) -> None:
    """Refuse, after one timed request, a benchmark whose --iterations (or --warmup: `option`, `count`)
    would run past --max-seconds (`perf --iterations 100000000` would otherwise run for days without a
    word); say how long a long one will take."""
    count = cfg.iterations if count is None else count
    estimate = request_s * count
    if estimate > cfg.max_seconds:
        raise DeployError(f"{option} {count} would take about {_duration(estimate)} "
                          f"({request_s * 1e3:.2f} ms per request), more than --max-seconds {cfg.max_seconds:g}; "
                          f"lower {option} or raise --max-seconds")
    if announce and estimate > 60:
        click.echo(f"perf: {count} requests per instance take about {_duration(estimate)}", err=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 \
        else f"{seconds / 3600:.1f} h"


def benchmark(cfg: PerfConfig, model: Any = None) -> dict:
    """Run the benchmark; returns the report dict (what --json writes). `model` reuses a loaded model
    for the first instance (single-process runs only)."""
    import psutil
    preflight(cfg)
    psutil.cpu_percent(None)
    if cfg.processes == 1:
        per_proc = [_run_instances(cfg, threading.Barrier(cfg.instances), model)]
    else:
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(cfg.instances * cfg.processes)
        results = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(cfg, barrier, results, os.getpid(), k), daemon=True)
                 for k in range(cfg.processes)]
        for p in procs:
            p.start()
        per_proc, errors = [], []
        while len(per_proc) + len(errors) < len(procs):
            try:
                status, value = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:  # killed or crashed without a word (a signal, out of memory)
                    barrier.abort()
                    raise DeployError(f"perf: a worker process died (exit code {dead[0]})") from None
                continue
            (per_proc if status == "ok" else errors).append(value)
        for p in procs:
            p.join()
        if errors:
            real = [e for e in errors if "BrokenBarrierError" not in e]
            raise DeployError(f"perf: a worker process failed: {(real or errors)[0]}")
    system_cpu = psutil.cpu_percent(None)
    insts = [r for proc in per_proc for r in proc["instances"]]
    start, end = min(r["start"] for r in insts), max(r["end"] for r in insts)
    wall = max(end - start, 1e-9)
    requests = cfg.iterations * len(insts)
    e2e = np.concatenate([r["e2e"] for r in insts])
    lat = np.concatenate([r["model"] for r in insts])
    cpu_s = sum(p["cpu_s"] for p in per_proc)  # process CPU time over each measured window
    rss = [p["peak_rss_mib"] for p in per_proc]
    return {
        "model": str(cfg.prefix), "vdsp_params": cfg.vdsp_params,
        "input_shapes": [list(s) for s in insts[0]["shapes"]], "input_dtypes": insts[0]["dtypes"],
        "instances": cfg.instances, "processes": cfg.processes, "batch": cfg.batch,
        "threads_per_instance": cfg.threads_per_instance(),
        "mode": "latency" if cfg.queue_size <= 0 else "throughput", "queue_size": cfg.queue_size,
        "iterations": cfg.iterations, "warmup": cfg.warmup, "requests": requests,
        "images": requests * cfg.batch, "wall_s": wall,
        "throughput_qps": requests * cfg.batch / wall,
        "e2e_latency_us": _stats(e2e, cfg.percentiles), "model_latency_us": _stats(lat, cfg.percentiles),
        "cpu_percent": _cpu_percent(cpu_s, wall), "cpu_percent_system": system_cpu, "cores": usable_cores(),
        "peak_rss_mib": max(rss), "peak_rss_total_mib": sum(rss),
    }


def kernel_profile(cfg: PerfConfig) -> list:
    """Per-kernel times of one request of the benchmark's shape (deploy.runtime.profile), in this
    process: which kernels cost the time when a model is slower than expected."""
    from deploy.runtime import Model
    from deploy.runtime.profile import profile
    model = Model(cfg.prefix, num_threads=cfg.num_threads)
    inputs = Inputs(model, cfg)
    batch = dict(zip((i.name for i in model.inputs), inputs.prepare(inputs.request(0))))
    return profile(model, batch, runs=max(3, min(cfg.iterations, 20)))


def format_report(r: dict) -> str:
    lines = [f"model: {r['model']}"]
    lines += [f"model input shape {k}: [{','.join(map(str, s))}], dtype: {d}"
              for k, (s, d) in enumerate(zip(r["input_shapes"], r["input_dtypes"]))]
    lines += [f"- number of instances in each process: {r['instances']}",
              f"- number of processes: {r['processes']}",
              f"- threads per instance: {r['threads_per_instance'] or 'all cores'}",
              "devices: [host cpu]",
              f"batch size: {r['batch']}",
              f"mode: {r['mode']} (queue_size {r['queue_size']}), {r['requests']} requests",
              f"throughput (qps): {r['throughput_qps']:.3f}"]
    for key, name in (("e2e_latency_us", "e2e latency (us)"), ("model_latency_us", "model latency (us)")):
        lines.append(f"{name}:")
        lines += [f"    {k} latency: {v:.0f}" for k, v in r[key].items()]
    cpu = "n/a (too short to measure)" if r["cpu_percent"] is None else f"{r['cpu_percent']:.1f}"
    lines += [f"cpu utilisation (%): {cpu} of {100 * (r['cores'] or 1)} "
              f"({r['cores']} cores; system-wide {r['cpu_percent_system']:.1f} %)",
              f"peak memory (MiB): {r['peak_rss_mib']:.1f}"
              + (f" per process, {r['peak_rss_total_mib']:.1f} in all" if r["processes"] > 1 else "")]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- accuracy
def accuracy(cfg: PerfConfig, datalist, path_output, workers: int = 2, model: Any = None,
             progress: bool | None = None, ray: str | None = None) -> dict:
    """Infer every npz of the datalist; line i → `path_output/output_{i:06d}.npz` (deploy.tools.npz_job).
    `ray`: on a Ray cluster instead (deploy.tools.ray_run: "local" starts one, else its address), same files."""
    from deploy.tools.npz_job import NpzInput, NpzJob
    from deploy.tools.ray_run import route
    entries = read_datalist(datalist)
    model = model or load_model(cfg.prefix, cfg.num_threads)
    job = NpzJob.of(model, vdsp_preprocessor(cfg.vdsp_params)[1] if cfg.vdsp_params else None)
    out_dir = Path(path_output)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = [NpzInput(i, p.absolute()) for i, p in enumerate(entries)]  # a Ray worker elsewhere has another cwd
    results, cluster = route(job, model, items, out_dir, batch=cfg.batch, workers=workers,
                             num_threads=cfg.num_threads, ray=ray)
    from tqdm import tqdm
    skipped = []
    t0 = time.perf_counter()
    try:
        with tqdm(total=len(entries), unit="npz", leave=False,
                  disable=None if progress is None else not progress) as bar:
            for r in results:
                if r.error is not None:
                    skipped.append((str(entries[r.index]), r.error))
                bar.update()
    finally:
        results.close()  # stops the stream's threads (or the cluster's workers) now, also on an error
    elapsed = time.perf_counter() - t0
    written = len(entries) - len(skipped)
    return {"written": written, "skipped": skipped, "path_output": str(out_dir), "elapsed_s": elapsed,
            "throughput_qps": written / elapsed if elapsed > 0 else None, **({"ray": cluster.info} if cluster else {})}


# ------------------------------------------------------------------------------------------ CLI
@click.command("perf", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--model_prefix", "--model", "prefix", required=True, help="Compiled model prefix (…/mod).")
@click.option("--vdsp_params", "--vdsp_params_info", "vdsp_params", type=click.Path(dir_okay=False), default=None,
              help="vdsp_params JSON: the input is then a uint8 planar image, preprocessed in the timed path.")
@click.option("-i", "--instance", "--instances", "instances", type=click.IntRange(1), default=1, show_default=True,
              help="Model instances per process (threads, each with its own model); -i x -p at most 256.")
@click.option("-p", "--process", "--processes", "processes", type=click.IntRange(1), default=1, show_default=True,
              help="Processes (spawned), each running -i instances.")
@click.option("-b", "--batch_size", "--batch", "batch", type=click.IntRange(1), default=1, show_default=True,
              help="Images per request.")
@click.option("-s", "--shape", "shape", default=None,
              help="Input shape(s) without batch: [3,96,96] or [[3,96,96],[1,10]] [default: vdsp/model].")
@click.option("-d", "--device_ids", "--device", "device", default="0", show_default=True,
              help="Vendor device ids; accepted for compatibility (the host runs the model).")
@click.option("--iterations", type=click.IntRange(1), default=100, show_default=True,
              help="Measured requests per instance.")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True, help="Unmeasured requests first.")
@click.option("--max-seconds", "max_seconds", type=click.FloatRange(0, min_open=True), default=3600.0,
              show_default=True, help="Refuse --iterations that would take longer (estimated from one timed request).")
@click.option("--percentiles", default="[50,90,95,99]", show_default=True, help="Latency percentiles to report.")
@click.option("--queue_size", type=click.IntRange(0), default=1, show_default=True,
              help="0: latency mode; Q > 0: throughput mode with Q prepared requests waiting.")
@click.option("--num-threads", "num_threads", type=click.IntRange(1), default=None,
              help="Threads per instance [default: the cores divided among the instances].")
@click.option("--datalist", type=click.Path(dir_okay=False), default=None,
              help="Accuracy mode: npz inputs, one path per line (image2npz).")
@click.option("--path_output", type=click.Path(file_okay=False), default=None,
              help="Accuracy mode: folder for output_%06d.npz.")
@click.option("--workers", type=WORKERS, default=2, show_default=True,
              help="Accuracy mode: reader/writer threads.")
@ray_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write the report here.")
@click.option("--profile", is_flag=True, help="Also time each compiled kernel (PrimFunc) and print the slowest.")
@click.argument("extra", nargs=-1, metavar="[p N]")
def cli(prefix, vdsp_params, instances, processes, batch, shape, device, iterations, warmup, max_seconds, percentiles,
        queue_size, num_threads, datalist, path_output, workers, ray, json_path, profile, extra):
    """Profile a compiled model, or run it over a datalist (vendor: vamp)."""
    if extra:
        if len(extra) == 2 and extra[0] == "p" and extra[1].isdigit():
            processes = int(extra[1])  # the vendor READMEs' typo "p 1" for "-p 1"
            click.echo(f"note: read 'p {extra[1]}' as '-p {extra[1]}'", err=True)
        else:
            raise click.UsageError(f"unexpected argument(s): {' '.join(extra)}")
    if (datalist is None) != (path_output is None):
        raise click.UsageError("accuracy mode needs both --datalist and --path_output")
    if ray is not None and datalist is None:
        raise click.UsageError("--ray runs the accuracy mode (--datalist, --path_output) on a cluster; "
                               "benchmark mode measures this machine")
    warn_device(device)
    if json_path:
        check_writable(json_path, "--json")
    cfg = PerfConfig(prefix=prefix, vdsp_params=vdsp_params, instances=instances, processes=processes, batch=batch,
                     shapes=parse_shapes(shape), iterations=iterations, warmup=warmup,
                     percentiles=parse_percentiles(percentiles) or DEFAULT_PERCENTILES,
                     queue_size=queue_size, num_threads=num_threads, max_seconds=max_seconds)
    if datalist:
        res = accuracy(cfg, datalist, path_output, workers, ray=ray)
        click.echo(f"wrote {res['written']} output file(s) to {res['path_output']} "
                   f"({res['throughput_qps'] or 0:.2f} qps)")
        if "ray" in res:
            click.echo(describe(res["ray"]))
        if res["skipped"]:
            click.echo(f"skipped {len(res['skipped'])} unreadable input(s) (no output_%06d.npz for them):", err=True)
            for _, reason in res["skipped"][:10]:
                click.echo(f"  {reason}", err=True)
    else:
        res = benchmark(cfg)
        click.echo(format_report(res))
        if profile:
            kernels = kernel_profile(cfg)
            res["kernels"] = [k.__dict__ for k in kernels]
            click.echo(profile_table(kernels))
    if json_path:
        atomic_write_json(json_path, res, default=str)

