"""`deploy run --ray [ADDRESS]` and `deploy perf --datalist … --ray`: the runstream scaled out on a Ray
cluster, with a local run's outputs.

    driver: items ─► chunks ─► [SuiteWorker × node-slots] ─► in order ─► job.write (+ results.csv)
    worker: suite bytes (object store, SHA-256 checked) ─► Model ─► job.run_images (the runstream)

- A job is what is done to each item, the same object the local route runs (plain data, shipped to the
  workers): deploy.tools.segment.ImageJob for `deploy run` (images → masks, npz, scores),
  deploy.tools.npz_job.NpzJob for `deploy perf --datalist` (input npz → output_NNNNNN.npz). Its
  `run_images` runs inside the worker and returns the items' files as bytes; its `write` runs on the driver.

- The model suite (`<prefix>.so` + `<prefix>.json`) is put once in Ray's object store; each worker
  checks the bytes against the SHA-256 the driver read, unpacks them into a private temp folder, loads
  deploy.runtime.Model from there and removes the folder: workers need no shared filesystem for the model.
- Images and masks are read by the workers where they are: their paths must be reachable from every
  node (a shared filesystem or the same mount everywhere).
- A worker is one node-slot: `--num-threads` CPUs (default: all of its node's CPUs, one worker per
  node) reserved in Ray and used by the model. Inside it, the same runstream as a local run decodes,
  preprocesses (vdsp), batches, infers, scores and encodes (deploy.tools.segment); the driver only
  writes the returned bytes, in input order, so outputs are byte-identical to a local `deploy run`.
- Faults: a chunk whose worker dies (node lost, process killed) is resubmitted to the other workers and
  the dead worker is replaced; a chunk that fails MAX_ATTEMPTS times stops the run. Unreadable images
  are results rows, exactly as locally. `--resume` needs nothing cluster-specific: the driver's save
  folder is the record. summary.json's `ray` entry gives the workers, nodes, retries and replacements, the
  startup time (until the first chunk came back) and the steady images/s: the sum over the workers of each
  one's rate after its first chunk, timed by the worker itself (start-up and driver delays left out);
  `describe` prints them.
- Nothing waits forever: when no chunk at all comes back for STALL_S seconds (a worker Ray cannot place,
  an image read blocked on a dead mount) the run stops with an error naming both, and the workers are
  killed on every way out (end, error, Ctrl-C, an abandoned iterator).

Why not ray.util.ActorPool: its get_next hands a dead actor back to the idle list and cannot replace
it, and task retries inside Ray (max_task_retries) are invisible to the driver, which must count them.
The loop below only chooses which live worker gets the next chunk; Ray places, ships and detects faults.
"""
from __future__ import annotations

import hashlib
import itertools
import shutil
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import click

from deploy.errors import DeployError
from deploy.runtime.suite import existing_paths

LOCAL = "local"             # --ray without an address: start a Ray instance on this machine
INSTALL_HINT = ("--ray needs Ray, an optional extra: pip install 'segdeploy[cluster]' (or pip install ray), "
                "on the driver and on every machine of the cluster")
CHUNK_BATCHES = 4           # batches per task: few enough to spread and to retry cheaply, enough to keep a worker busy
IN_FLIGHT = 2               # tasks queued per worker, so a worker never waits for the driver between chunks
MAX_ATTEMPTS = 3            # a chunk that kills this many workers is not a worker fault: stop the run
STALL_S = 600.0             # no chunk back for this long: something cannot progress (see the module docstring)


class Job(Protocol):
    """What ClusterRun needs of a job (segment.ImageJob, npz_job.NpzJob)."""

    def run_images(self, infer: Callable, items: Iterable[Any], *, batch: int, workers: int,
                   save_dir: Path | None = None) -> Iterator[Any]: ...

    def write(self, save_dir: Path, item: Any, result: Any) -> Any: ...

    def label(self, item: Any) -> str: ...


def import_ray() -> Any:
    """Ray, imported only when --ray is given; a clear install hint when it is missing."""
    try:
        import ray
    except ImportError:
        raise DeployError(INSTALL_HINT) from None
    return ray


def _check_ray(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--ray fails at once, before any work, with the install hint when Ray is missing."""
    if value is not None:
        try:
            import_ray()
        except DeployError as e:
            raise click.BadParameter(str(e)) from None
    return value


def ray_option(command: Callable) -> Callable:
    """The --ray [ADDRESS] option of `deploy run`, vsx_inference.py and `deploy perf --datalist`."""
    return click.option(
        "--ray", "ray", is_flag=False, flag_value=LOCAL, default=None, metavar="[ADDRESS]", callback=_check_ray,
        help="Run on a Ray cluster: alone, a local Ray instance; `auto` or ray://HOST:PORT joins a running "
             "cluster (--num-threads: CPUs per worker, default a whole node). Needs the `cluster` extra.")(command)


def route(job: Job, model: Any, items: Sequence[Any], save_dir: Path, *, batch: int, workers: int,
          num_threads: int | None = None, ray: str | None = None) -> tuple[Iterator[Any], "ClusterRun | None"]:
    """(each item's result in order with its files written under `save_dir`, the ClusterRun or None):
    the local runstream on `model`, or with `ray` (LOCAL or an address) the same job on a Ray cluster,
    which loads the suite at `model.prefix` on its workers. Close the iterator when done."""
    if ray is None:
        from deploy.runtime.stream import batch_runner
        return job.run_images(batch_runner(model), items, batch=batch, workers=workers, save_dir=save_dir), None
    cluster = ClusterRun(ray, model.prefix, job, batch=batch, workers=workers, num_threads=num_threads)
    return cluster.run(items, save_dir), cluster


def describe(info: dict) -> str:
    """The run summary's Ray line: where it ran, the faults survived, start-up and steady rate."""
    steady = "" if info.get("steady_ips") is None else f", {info['steady_ips']:.2f} images/s after"
    startup = "" if info.get("startup_s") is None else f"; start-up {info['startup_s']:.1f} s{steady}"
    return (f"ray ({info['address']}): {info['workers']} worker(s) on {info['nodes']} node(s), "
            f"{info['retries']} retried chunk(s), {info['replaced']} worker(s) replaced{startup}")


@dataclass(frozen=True)
class Suite:
    """A compiled model suite as it travels through the object store: the files' bytes and SHA-256."""
    name: str
    so: bytes
    meta: bytes
    so_sha256: str
    meta_sha256: str

    @classmethod
    def read(cls, prefix: str | Path) -> "Suite":
        so_path, meta_path = existing_paths(prefix)
        so, meta = so_path.read_bytes(), meta_path.read_bytes()
        return cls(Path(prefix).name, so, meta, _sha256(so), _sha256(meta))

    def unpack(self, folder: Path) -> Path:
        """Writes the files into `folder` after checking their digests; returns the prefix to load."""
        for what, data, digest in (("library", self.so, self.so_sha256), ("description", self.meta, self.meta_sha256)):
            if _sha256(data) != digest:
                raise DeployError(f"model {what} {self.name}: SHA-256 mismatch on arrival (corrupted in transfer)")
        prefix = folder / self.name
        prefix.with_name(self.name + ".so").write_bytes(self.so)
        prefix.with_name(self.name + ".json").write_bytes(self.meta)
        return prefix


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SuiteWorker:
    """One node-slot (a Ray actor): the suite loaded once, then chunks of images through the runstream."""

    def __init__(self, suite: Suite, job: Job, threads: int, batch: int, workers: int):
        from deploy.runtime import Model
        from deploy.runtime.stream import batch_runner
        folder = Path(tempfile.mkdtemp(prefix="segdeploy-suite-"))
        try:  # once loaded, the library lives on in memory: the private copy can go
            self.model = Model(suite.unpack(folder), num_threads=threads)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.infer = batch_runner(self.model)
        self.job, self.batch, self.workers = job, batch, workers

    def run(self, items: Sequence[Any]) -> tuple[list[Any], float]:
        """The items' results and when they were done, on this worker's clock (for the steady rate)."""
        return list(self.job.run_images(self.infer, items, batch=self.batch, workers=self.workers)), time.perf_counter()


def slots(nodes: list[dict], num_threads: int | None) -> list[tuple[str, int]]:
    """(node id, threads) per worker: each alive node's CPUs cut into `num_threads`-CPU slots (default:
    one slot of all its CPUs); no node counts are assumed."""
    out = []
    for node in nodes:
        cpus = int(node.get("Resources", {}).get("CPU", 0))
        if node.get("Alive") and cpus:
            threads = num_threads or cpus
            out += [(node["NodeID"], threads)] * (cpus // threads)
    if not out:
        raise DeployError(f"the Ray cluster has no node with {num_threads or 1} CPU(s) for a worker "
                          "(see `ray status`; lower --num-threads)")
    return out


class ClusterRun:
    """`ClusterRun(address, prefix, job, ...).run(items, save_dir)` yields each item's result, in order,
    after `job.write` put its files; `info` then says how many workers and retries there were."""

    def __init__(self, address: str, prefix: str | Path, job: Job, *, batch: int, workers: int,
                 num_threads: int | None = None):
        self.ray = import_ray()
        self.address, self.prefix, self.job = address, Path(prefix), job
        self.batch, self.workers, self.num_threads = batch, workers, num_threads
        self.info: dict = {"address": address, "workers": 0, "nodes": 0, "retries": 0, "replaced": 0,
                           "startup_s": None, "steady_ips": None}

    def run(self, items: Sequence[Any], save_dir: Path) -> Iterator[Any]:
        ray = self.ray
        size = self.batch * CHUNK_BATCHES
        chunks = [list(items[i:i + size]) for i in range(0, len(items), size)]
        if not chunks:  # e.g. a resume with nothing left to do
            return
        t0 = time.perf_counter()
        started = not ray.is_initialized()
        if started:
            self._init()
        pool: list[Any] = []
        try:
            specs = slots(ray.nodes(), self.num_threads)
            self.info.update(workers=len(specs), nodes=len({node for node, _ in specs}))
            make = self._factory(ray.put(Suite.read(self.prefix)))
            pool += [make(spec) for spec in specs]
            first = None
            arrivals: dict[tuple[int, int], list[tuple[float, int]]] = {}
            for chunk, rendered in zip(chunks, self._results(chunks, pool, specs, make, arrivals)):
                if first is None:  # Ray up, the workers started (TVM imported, model loaded), a chunk done
                    first = time.perf_counter()
                    self.info["startup_s"] = first - t0
                for item, r in zip(chunk, rendered):
                    yield self.job.write(save_dir, item, r)
            self.info["steady_ips"] = steady_rate(arrivals.values())
        finally:
            for actor in pool:
                ray.kill(actor)
            if started:
                ray.shutdown()

    def _init(self) -> None:
        """Start (LOCAL) or join the Ray instance; a cluster that is not there is a clear error. A dashboard
        is the cluster's business: a throwaway local instance does without."""
        try:
            self.ray.init(address=self.address, **({"include_dashboard": False} if self.address == LOCAL else {}))
        except ConnectionError as e:
            raise DeployError(f"--ray {self.address}: no Ray cluster to join ({e}); start one with `ray start "
                              "--head` (see the README's Ray section), or give --ray alone for a local one") from None

    def _factory(self, suite_ref: Any):
        """A function starting one SuiteWorker on a slot (soft node affinity: elsewhere when the node is gone)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        actor_class = self.ray.remote(SuiteWorker)
        run_id = uuid.uuid4().hex[:8]
        count = itertools.count()

        def make(spec: tuple[str, int]) -> Any:
            node, threads = spec
            return actor_class.options(
                num_cpus=threads, name=f"segdeploy-run-{run_id}-{next(count)}", max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
            ).remote(suite_ref, self.job, threads, self.batch, self.workers)
        return make

    def _results(self, chunks: list[list[Any]], pool: list[Any], specs: list[tuple[str, int]],
                 make: Callable, arrivals: dict) -> Iterator[list[Any]]:
        """Each chunk's results in chunk order; a chunk whose worker died goes to the front of the queue
        and that worker (slot) gets a fresh actor. `arrivals[(slot, generation)]` gets (done at, images)
        per chunk on the worker's clock (a slot's replacement is its next generation)."""
        ray = self.ray
        queued = deque(range(len(chunks)))
        running: dict[Any, tuple[int, int, Any, int]] = {}  # task ref -> (chunk, slot, actor, generation)
        generation: Counter = Counter()
        load = Counter({slot: 0 for slot in range(len(pool))})
        done: dict[int, list[Any]] = {}
        attempts: Counter = Counter()
        emitted = 0
        while emitted < len(chunks):
            while queued and min(load.values()) < IN_FLIGHT:
                slot = min(load, key=load.__getitem__)
                i = queued.popleft()
                running[pool[slot].run.remote(chunks[i])] = (i, slot, pool[slot], generation[slot])
                load[slot] += 1
            ref = self._next_done(running)
            i, slot, actor, gen = running.pop(ref)
            load[slot] -= 1
            try:
                done[i], at = ray.get(ref, timeout=STALL_S)  # ready: the timeout only guards a result being fetched
                arrivals.setdefault((slot, gen), []).append((at, len(chunks[i])))
            except ray.exceptions.RayTaskError as e:  # the job raised inside the worker: not a worker fault
                raise _cause(e) from None
            except self._worker_lost as e:
                attempts[i] += 1
                self.info["retries"] += 1
                if attempts[i] >= MAX_ATTEMPTS:
                    names = ", ".join(self.job.label(item) for item in chunks[i][:3])
                    raise DeployError(f"the inputs {names}... lost {MAX_ATTEMPTS} Ray workers: {e}") from None
                queued.appendleft(i)
                if pool[slot] is actor:  # the first of its lost tasks to come back replaces it
                    ray.kill(actor)
                    pool[slot] = make(specs[slot])
                    generation[slot] += 1
                    self.info["replaced"] += 1
            while emitted in done:
                yield done.pop(emitted)
                emitted += 1

    @property
    def _worker_lost(self) -> tuple[type[BaseException], ...]:
        """What a lost worker (process killed, node gone with the results it held) looks like on ray.get."""
        ex = self.ray.exceptions
        return ex.RayActorError, ex.WorkerCrashedError, ex.ObjectLostError, ex.GetTimeoutError

    def _next_done(self, running: dict) -> Any:
        """The first task to finish; none within STALL_S is a stopped run, not a slow one."""
        ready, _ = self.ray.wait(list(running), num_returns=1, timeout=STALL_S)
        if not ready:
            raise DeployError(f"Ray: no chunk of {CHUNK_BATCHES} batch(es) finished in {STALL_S:.0f} s: a worker "
                              "the cluster cannot place (see `ray status`: free CPUs for --num-threads) or inputs "
                              "unreadable from the workers (the paths must be reachable on every node)")
        return ready[0]


def steady_rate(arrivals: Iterable[list[tuple[float, int]]]) -> float | None:
    """Images/s of a pool once its workers are up: per worker, the images of its chunks after the first over
    the time from its first to its last (its own clock, in the order done), summed; None with no worker
    that did two chunks. (The time to the first chunk over all would count a second worker's first chunk,
    done during the start-up, as steady work.)"""
    rates = []
    for done in arrivals:
        done = sorted(done)
        if len(done) > 1 and done[-1][0] > done[0][0]:
            rates.append(sum(n for _, n in done[1:]) / (done[-1][0] - done[0][0]))
    return sum(rates) if rates else None


def _cause(e: Exception) -> BaseException:
    """A job's own error raised inside a worker, as itself (a DeployError keeps its clear message)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, DeployError):
        return cause
    return DeployError(f"a Ray worker failed: {cause!r}" if cause is not None else f"a Ray worker failed: {e}")
