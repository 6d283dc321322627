"""MLflow setup and logging helpers: the store, runs with the standard tags, metrics, curves and models.

Tracking URI: $MLFLOW_TRACKING_URI, else a SQLite file at the repository root
(`sqlite:///<root>/mlflow.db`). Queued/--temp DVC experiments run in copies under
.dvc/tmp/exps; the default store is resolved to the real repository so their runs
are not lost with the copy.

Parallel writers (`dvc queue start -j N`) share one SQLite file. Measured: 4 processes opening a
fresh store at once ran MLflow's schema migrations concurrently and 3 of them failed ("duplicate
column name", alembic "expected to match one row"). `setup` therefore creates the store and the
experiment under an exclusive file lock and switches the file to WAL (readers never block the
writer); later writes wait on SQLite's busy timeout instead of failing with "database is locked".
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import sqlite3
import subprocess
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from .paths import repo_root
from .schema import Section

SQLITE_TIMEOUT_S = 60  # concurrent writers (dvc queue start -j N) wait instead of "database is locked"
SERVER_SCHEMES = ("http://", "https://", "databricks")  # the server chooses where artifacts go
log = logging.getLogger("fkstudy.tracking")


class MlflowParams(Section):
    """params.yaml section `mlflow`: the one experiment every training run of the study logs to."""

    experiment: str


def main_repo_root() -> Path:
    root = repo_root()
    parts = root.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{main_repo_root() / 'mlflow.db'}?timeout={SQLITE_TIMEOUT_S}"


def git_commit() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True,
                           timeout=10)
        # no commit yet: git exits 128 but still prints "HEAD" on stdout
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def standard_tags(stage: str, **extra) -> dict:
    tags = {"stage": stage, "git_commit": git_commit(),
            "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
            "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", "")}
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (query string dropped), None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def _store_lock(db: Path):
    """An exclusive lock per database file, held while the store and the experiment are created."""
    key = hashlib.sha256(str(db.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"fkstudy-mlflow-{key}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _use_wal(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as e:  # e.g. a filesystem without shared memory: stay in rollback mode
        log.warning("MLflow store %s: could not switch to WAL (%s); concurrent writers rely on the busy timeout",
                    db, e)
    finally:
        con.close()


def artifact_root(db: Path | None) -> Path:
    """`mlartifacts/` beside a SQLite file (the repo root for the default store), else at the repo root."""
    return (db.resolve().parent if db else main_repo_root()) / "mlartifacts"


def setup(experiment: str):
    """Point MLflow at the store and make sure the store and the experiment exist.

    A SQLite store is created (schema migrations) and the experiment registered under a file lock,
    so parallel queue workers never race on a fresh file. A new experiment's artifacts default to
    `<cwd>/mlruns`, which for a queued DVC experiment is a temp copy that is deleted afterwards:
    see `artifact_root`; a tracking server keeps its own default.
    """
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    db = sqlite_path(uri)
    with _store_lock(db) if db else nullcontext():
        if db:
            _use_wal(db)
        if mlflow.get_experiment_by_name(experiment) is None:  # opens (creates, migrates) the store
            location = None if uri.startswith(SERVER_SCHEMES) else artifact_root(db).as_uri()
            try:
                mlflow.create_experiment(experiment, artifact_location=location)
            except mlflow.exceptions.MlflowException:
                pass  # created meanwhile by a worker on another store lock (non-SQLite store)
    return mlflow.set_experiment(experiment)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


@contextmanager
def run(experiment: str, stage: str, run_name: str, params: dict, tags: dict | None = None, nested: bool = False):
    """An MLflow run with the stage's params and the standard tags."""
    import mlflow

    setup(experiment)
    with mlflow.start_run(run_name=run_name, nested=nested, tags=standard_tags(stage, **(tags or {}))) as r:
        mlflow.log_params({k: (str(v)[:500]) for k, v in flatten(params).items()})
        yield r


# ------------------------------------------------------------------ metrics, curves and models of a run
_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")


def metric_key(key: str) -> str:
    """MLflow allows alphanumerics, _ - . / and space: 'Kitchen & Dining' -> 'Kitchen and Dining'."""
    return _BAD.sub("_", key.replace("&", "and"))


def log_metrics(metrics: dict, prefix: str = "") -> None:
    import mlflow

    flat = {metric_key(prefix + k): float(v) for k, v in flatten(metrics).items()
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}
    if flat:
        mlflow.log_metrics(flat)


def log_curve(curve, prefix: str = "") -> None:
    """One MLflow metric per curve column, step = epoch, sent in one batch (one call per epoch
    made a 300-epoch run spend minutes in SQLite writes on this shared machine)."""
    import time

    import mlflow
    from mlflow.entities import Metric

    if curve is None or curve.empty:
        return
    now = int(time.time() * 1000)
    metrics = [Metric(metric_key(prefix + k), float(v), now, int(e))
               for k in curve.select_dtypes("number").columns if k != "epoch"
               for e, v in zip(curve["epoch"], curve[k])]
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for i in range(0, len(metrics), 1000):  # MLflow's per-request limit
        client.log_batch(run_id, metrics=metrics[i:i + 1000])


def log_model(model, X_sample: np.ndarray, name: str = "model") -> None:
    """Log a fitted sklearn model (skops format, no pickle) with an input/output signature.

    MLflow 3 names the model with `name=` (`artifact_path=` is deprecated). pip requirements are
    given so MLflow does not spend a subprocess inferring them.
    """
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    X_sample = np.asarray(X_sample, dtype=np.float64)
    signature = infer_signature(X_sample, model.predict_proba(X_sample))
    mlflow.sklearn.log_model(model, name=name, signature=signature, serialization_format="skops",
                             skops_trusted_types=sklearn_types(model),
                             pip_requirements=[f"scikit-learn=={sklearn.__version__}", "skops"])


def sklearn_types(model) -> list[str]:
    """The scikit-learn internals skops does not trust by default (e.g. the MLP's AdamOptimizer);
    anything from outside scikit-learn stays untrusted and makes log_model fail."""
    from skops.io import dumps, get_untrusted_types

    return [t for t in get_untrusted_types(data=dumps(model)) if t.startswith("sklearn.")]


def log_keras_model(model, X_sample: np.ndarray, name: str = "model") -> None:
    """Log a Keras model (native .keras format) with an input/output signature."""
    import keras
    import mlflow
    from mlflow.models import infer_signature

    X_sample = np.asarray(X_sample, dtype=np.float32)
    signature = infer_signature(X_sample, np.asarray(model.predict(X_sample, verbose=0)))
    mlflow.keras.log_model(model, name=name, signature=signature,
                           pip_requirements=[f"keras=={keras.__version__}", "tensorflow"])
