"""What every stage does first: load validated params, pin threads and seeds, log."""
from __future__ import annotations

import logging
import os
import random
import sys
import time
from contextlib import contextmanager

import numpy as np

from .config import load_params, repo_root

log = logging.getLogger("fkstudy")


def start_stage(name: str) -> dict:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s",
                        stream=sys.stderr)
    for noisy in ("gensim", "smart_open", "matplotlib", "PIL", "urllib3", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    params = load_params()
    n = params["n_jobs"]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass
    seed_everything(params["seed"])
    os.chdir(repo_root())
    return params


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


@contextmanager
def timed(label: str, sink: dict | None = None, key: str | None = None):
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    log.info("%s: %.2fs", label, dt)
    if sink is not None:
        sink[key or label] = round(dt, 3)


def write_timings(stage: str, timings: dict, key: str | None = None) -> str:
    """Wall-clock figures of one stage run -> reports/timings/<stage>[/<key>].json (a DVC out, not a metric).

    Timings differ on every run, so they stay out of metrics/ (kept byte-identical for the same
    params) and out of feature-file meta (kept byte-identical too). Benchmarks and the report read them.
    """
    from . import io

    path = f"reports/timings/{stage}/{key}.json" if key else f"reports/timings/{stage}.json"
    io.write_json(path, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in timings.items()})
    return path
