"""What every stage does first and last: load validated params and hand the stage only the keys its
dvc.yaml entry declares, pin threads and seeds, time, and report an expected failure on one line.

    def main(argv=None):
        stage = start_stage("cluster@text_bow")
        stage.params.cluster.n_seeds          # declared: fine
        stage.params.fusion                   # not declared: UndeclaredParamError

    if __name__ == "__main__":
        run_stage(main)

A stage that read a key its dvc.yaml entry does not list would never re-run when that key changes (DVC
only watches the declared ones): here such a read stops the stage instead. With FKSTUDY_PARAMS_AUDIT
set to a file, every key a stage reads is appended to it (the integration test checks it).
"""
from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import files, paths
from .errors import StudyError, one_line
from .params import TOP_LEVEL, load_params, repo_root
from .pipeline import declared_params

log = logging.getLogger("fkstudy")
AUDIT_ENV = "FKSTUDY_PARAMS_AUDIT"
EXIT_EXPECTED = 2
QUIET_LOGGERS = ("gensim", "smart_open", "matplotlib", "PIL", "urllib3", "h5py", "absl", "tensorflow",
                 "numexpr", "httpx", "alembic", "mlflow.store.db.utils")


class UndeclaredParamError(StudyError, AttributeError):
    """A stage read a params key that its dvc.yaml entry does not declare."""


class DeclaredParams:
    """A read-only view of the typed params exposing only `declared` keys (and everything below them)."""

    def __init__(self, model: Any, declared: list[str], stage: str, prefix: str = ""):
        self._model, self._declared, self._stage, self._prefix = model, tuple(declared), stage, prefix

    def _covered(self, key: str) -> bool:
        return any(key == d or key.startswith(d + ".") for d in self._declared)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = self._prefix + name
        if self._covered(key):
            _audit(self._stage, key)
            return getattr(self._model, name)
        if any(d.startswith(key + ".") for d in self._declared):
            return DeclaredParams(getattr(self._model, name), self._declared, self._stage, key + ".")
        if self._prefix:  # inside a loaded section: a key that does not exist at all is an AttributeError
            getattr(self._model, name)
        elif name not in TOP_LEVEL:
            raise AttributeError(f"params.yaml has no key {name!r}")
        raise UndeclaredParamError(
            f"stage {self._stage} reads params key '{key}', which its dvc.yaml entry does not declare: add it "
            f"to the stage's `params:` list (declared: {list(self._declared)})")

    def dump(self) -> dict:
        """The declared part as a plain nested dict (for MLflow run params)."""
        out: dict = {}
        for d in self._declared:
            if not d.startswith(self._prefix):
                continue
            *parents, leaf = d[len(self._prefix):].split(".")
            value, node = self._model, out
            for part in (*parents, leaf):
                value = getattr(value, part)
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value.model_dump() if hasattr(value, "model_dump") else value
        return out


def _audit(stage: str, key: str) -> None:
    path = os.environ.get(AUDIT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"stage": stage, "key": key}) + "\n")


@dataclass
class Stage:
    """A running stage: its name, its declared params, and the wall-clock figures it records."""

    name: str
    params: DeclaredParams
    timings: dict = field(default_factory=dict)

    @contextmanager
    def timed(self, label: str, key: str | None = None):
        with timed(label, self.timings, key):
            yield

    def write_timings(self, stage: str, key: str | None = None, **extra) -> str:
        return write_timings(stage, {**extra, **self.timings}, key)


def start_stage(name: str, params: Any | None = None) -> Stage:
    """Log, load the params.yaml sections dvc.yaml declares for `name` (validated; no other section is loaded),
    restrict them to the declared keys, pin the thread pools to `n_jobs` and seed the global RNGs with `seed`
    (when declared), chdir to the repo."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s",
                        stream=sys.stderr)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root = repo_root()
    os.chdir(root)
    declared = declared_params(name, root)
    if params is None:
        params = load_params(root / "params.yaml", sections={d.split(".")[0] for d in declared})
    view = DeclaredParams(params, declared, name)
    if "n_jobs" in declared:
        pin_threads(view.n_jobs)
    if "seed" in declared:
        seed_everything(view.seed)
    return Stage(name, view, {"startup_seconds": round(process_age(), 3)})


def process_age() -> float:
    """Seconds since this process started (interpreter start-up, imports, params validation so far)."""
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # psutil missing or /proc unreadable: no figure rather than a wrong one
        return float("nan")


def pin_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage's main(): an expected failure (StudyError: bad input, missing prerequisite, refused leak)
    prints `error: <what>` on one line and exits 2; anything else is a bug and keeps its traceback."""
    try:
        main()
    except StudyError as exc:
        if os.environ.get("FKSTUDY_TRACEBACK"):
            traceback.print_exc()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_EXPECTED)


def stage_argument(argv: list[str] | None, choices, usage: str) -> list[str]:
    """The stage's command-line arguments, each checked against its choices (None = any value)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != len(choices) or any(c is not None and a not in c for a, c in zip(args, choices)):
        raise StudyError(f"usage: {usage}; got {args}")
    return args


@contextmanager
def timed(label: str, sink: dict | None = None, key: str | None = None):
    t0 = time.perf_counter()
    yield
    dt = time.perf_counter() - t0
    log.info("%s: %.2fs", label, dt)
    if sink is not None:
        sink[key or label] = round(dt, 3)


def write_timings(stage: str, timings: dict, key: str | None = None) -> str:
    """Wall-clock figures of one stage run -> reports/timings/<stage>[/<key>].json: a git-ignored file, not a DVC
    output. Timings differ on every run and on every machine, so they stay out of everything DVC hashes
    (metrics/, plots/, the report, feature-file meta, dvc.lock): a run with the same code, params and data
    leaves `git status` clean. The benchmarks (bench/) read them; training stages also log them to MLflow.
    """
    path = paths.timings(stage, key)
    files.write_json(path, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in timings.items()})
    return path
