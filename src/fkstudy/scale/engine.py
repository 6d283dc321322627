"""One catalogue-scale job run over its chunks: in this process (engine `local`) or with Ray Data on a cluster
(engine `ray`). Both run the same two functions on the same chunks, so they write the same bytes:

    read(plan, index) -> payload      where the catalogue file is (the stage's machine): the chunk's records
    Worker(*args)                     loads its model once (a Ray actor per replica, or once here)
    worker(payload) -> result         a dict of str / bytes / int, one per chunk

and hand the results back in chunk order (`run` is a generator: the caller writes each as it comes, so memory
holds a few chunks, not the catalogue).

Ray: the stage process is the Ray driver (DVC's pattern: the stage command submits the job). It connects to
`scale.ray_address` ("" = starts a Ray on this machine for the job), ships this package to the workers
(runtime_env py_modules: every node runs the driver's code) with the stage's pinned numerics and thread counts
(runtime_env env_vars, set before a worker imports numpy or torch: fkstudy.numerics), and builds a Ray Data
pipeline: the chunk indices -> `map_batches(read)` as tasks pinned to the driver's node (the catalogue file need
not be on the others) -> `map_batches(Worker)` on a pool of `scale.workers` actors spread over the nodes, each
reserving `n_jobs` CPUs. A chunk is one Ray task: if a worker process or node dies, Ray restarts the actor and
retries the chunk; results come back once per chunk, in order (preserve_order), and the driver checks that
every chunk came back exactly once.
"""
from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import StudyError

log = logging.getLogger("fkstudy")
PACKAGE_DIR = Path(__file__).resolve().parents[1]     # src/fkstudy: shipped to every Ray worker


class EngineError(StudyError, RuntimeError):
    """The job could not run on the engine (no cluster at the address, a chunk lost or returned twice)."""


@dataclass(frozen=True)
class Settings:
    engine: str            # local | ray
    ray_address: str       # "" = a Ray started for this job on this machine
    workers: int           # actors (model replicas)
    n_jobs: int            # threads per worker = CPUs each actor reserves

    @classmethod
    def from_params(cls, scale, n_jobs: int) -> Settings:
        return cls(scale.engine, scale.ray_address, scale.workers, n_jobs)


def worker_env(n_jobs: int) -> dict[str, str]:
    """What a stage process sets before any library loads (stages/_bootstrap.py + runtime.pin_threads), for a
    Ray worker: pinned numerics, n_jobs threads, passive OpenMP waiting, no CUDA, offline model hubs."""
    from .. import numerics

    env = {**numerics.pinned_env(), numerics.MODE_VAR: numerics.mode(),
           "OMP_WAIT_POLICY": "PASSIVE", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[var] = str(n_jobs)
    return env


def run(n_chunks: int, read: Callable[[int], dict], worker: type, args: tuple, s: Settings) -> Iterator[dict]:
    """The workers' results, one per chunk, in chunk order, each with its `chunk` index."""
    results = _local(n_chunks, read, worker, args) if s.engine == "local" else _ray(n_chunks, read, worker, args, s)
    return in_order(results, n_chunks)


def in_order(results: Iterator[dict], n_chunks: int) -> Iterator[dict]:
    """`results` checked to be chunks 0 .. n_chunks-1 exactly once, in order (an EngineError names the first one
    lost or repeated), with a progress line every ~5 %."""
    expected, t0 = 0, time.perf_counter()
    step = max(1, n_chunks // 20)
    for result in results:
        if result["chunk"] != expected:
            what = "lost" if result["chunk"] > expected else "returned twice"
            raise EngineError(f"chunk {min(result['chunk'], expected)} {what} (chunk {result['chunk']} came back "
                              f"where chunk {expected} was expected)")
        expected += 1
        if expected % step == 0 or expected == n_chunks:
            log.info("chunks %d / %d done (%.1f s)", expected, n_chunks, time.perf_counter() - t0)
        yield result
    if expected != n_chunks:
        raise EngineError(f"{n_chunks - expected} of {n_chunks} chunks never came back (from chunk {expected})")


def _local(n_chunks: int, read, worker: type, args: tuple) -> Iterator[dict]:
    w = worker(*args)
    for i in range(n_chunks):
        yield {"chunk": i, **w(read(i))}


# ------------------------------------------------------------------------------------------------ Ray
def _read_batch(batch: dict, read: Callable[[int], dict]) -> dict:
    """Ray task: chunk indices -> their payloads (JSON text)."""
    import numpy as np

    chunks = [int(i) for i in batch["chunk"]]
    return {"chunk": np.asarray(chunks, dtype=np.int64),
            "payload": np.asarray([json.dumps(read(i)) for i in chunks], dtype=object)}


class _Actor:
    """Ray actor: one worker (its model loaded once), applied to each chunk of a batch."""

    def __init__(self, worker: type, args: tuple):
        import ray

        from .. import numerics

        differs = numerics.describe()["differs"]
        if differs:  # the runtime_env's variables did not reach this process: its numbers could differ
            raise EngineError(f"a Ray worker on {os.uname().nodename} runs unpinned numerics ({differs}): "
                              "the runtime_env's env_vars were not applied")
        self.worker = worker(*(ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args))

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        results = [{"chunk": int(i), **self.worker(json.loads(p))} for i, p in zip(batch["chunk"], batch["payload"])]
        return {k: np.asarray([r[k] for r in results], dtype=np.int64 if k == "chunk" else object)
                for k in results[0]}


def connect(address: str, n_jobs: int) -> None:
    """ray.init on `address` ("" = start a Ray on this machine), workers running this package with the stage's
    pinned environment."""
    import ray

    runtime_env = {"py_modules": [str(PACKAGE_DIR)], "env_vars": worker_env(n_jobs),
                   "excludes": ["__pycache__", "*.pyc"]}
    kwargs: dict[str, Any] = {"include_dashboard": False} if not address else {}
    try:
        ray.init(address=address or "local", runtime_env=runtime_env, logging_level=logging.WARNING,
                 log_to_driver=False, configure_logging=True, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"no Ray cluster at scale.ray_address={address!r} ({first}); start one (`ray start "
                          "--head` on the head node, `ray start --address <head>:6379` on the others) or set "
                          "scale.ray_address to \"\" (a Ray on this machine)") from None
    _quiet_ray_data()


def fit_workers(n_jobs: int, workers: int) -> tuple[int, int]:
    """(CPUs each actor reserves, actors): n_jobs CPUs for its n_jobs threads, or every CPU of the largest node
    when no node has that many, and no more actors than the cluster's CPUs hold (a reservation the cluster cannot
    meet would wait forever). Threads stay n_jobs: the numbers do not move."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
    largest, total = max(cpus, default=0), sum(cpus)
    log.info("ray: %d node(s), %d CPUs (largest node %d)", len(nodes), total, largest)
    if largest < 1:
        raise EngineError("the Ray cluster has no CPU to run a worker on")
    each = min(n_jobs, largest)
    if each < n_jobs:
        log.warning("ray: each worker runs %d threads but the largest node has %d CPUs: it reserves %d", n_jobs,
                    largest, each)
    fits = sum(c // each for c in cpus)
    if workers > fits:
        log.warning("ray: scale.workers=%d but the cluster holds %d workers of %d CPUs: %d", workers, fits, each, fits)
    return each, min(workers, fits)


def _quiet_ray_data() -> None:
    """Ray Data's per-dataset INFO lines (execution plan, log paths) and its notice that progress bars are off stay
    out of the stage log; its warnings and errors do not."""
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _ray(n_chunks: int, read, worker: type, args: tuple, s: Settings) -> Iterator[dict]:
    import ray

    connect(s.ray_address, s.n_jobs)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        here = ray.get_runtime_context().get_node_id()
        cpus, workers = fit_workers(s.n_jobs, s.workers)
        # a large argument (the scoring model's archive) goes once into the object store, not into every actor's spec
        args = tuple(ray.put(a) if isinstance(a, bytes) and len(a) > 1 << 20 else a for a in args)
        ds = ray.data.from_items([{"chunk": i} for i in range(n_chunks)], override_num_blocks=n_chunks)
        ds = ds.map_batches(_read_batch, fn_kwargs={"read": read}, batch_size=None, num_cpus=0,
                            compute=ray.data.TaskPoolStrategy(size=1), label_selector={"ray.io/node-id": here})
        with warnings.catch_warnings():  # scheduling_strategy has no named parameter yet (RayDeprecationWarning)
            warnings.simplefilter("ignore")
            ds = ds.map_batches(_Actor, fn_constructor_args=(worker, args), batch_size=None, num_cpus=cpus,
                                compute=ray.data.ActorPoolStrategy(size=workers), scheduling_strategy="SPREAD")
        log.info("ray: %d chunks, %d workers x %d threads (%d CPUs reserved each)", n_chunks, workers, s.n_jobs, cpus)
        for row in ds.iter_rows():
            yield _plain(row)
    except ray.exceptions.RayError as exc:
        raise _study_error(exc) from None
    finally:
        ray.shutdown()


def _plain(row: dict) -> dict:
    """A result row as plain Python values (Arrow gives numpy scalars)."""
    out = {}
    for k, v in row.items():
        out[k] = v.item() if hasattr(v, "item") and not isinstance(v, (bytes, str)) else v
    return out


def _study_error(exc: BaseException) -> BaseException:
    """The StudyError a worker raised (a bad input, missing weights), found in Ray's wrapping, else the Ray error."""
    seen = exc
    while seen is not None:
        if isinstance(seen, StudyError):
            return seen
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    return exc
