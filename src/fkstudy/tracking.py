"""MLflow setup and logging helpers.

Tracking URI: $MLFLOW_TRACKING_URI, else a SQLite file at the repository root
(`sqlite:///<root>/mlflow.db`). Queued/--temp DVC experiments run in copies under
.dvc/tmp/exps; the default store is resolved to the real repository so their runs
are not lost with the copy.
"""
from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

from .config import repo_root

SQLITE_TIMEOUT_S = 60  # concurrent writers (dvc queue start -j N) wait instead of "database is locked"


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


def setup(experiment: str):
    """Point MLflow at the store and make sure the experiment exists.

    A new experiment's artifacts default to `<cwd>/mlruns`, which for a queued DVC experiment is a
    temp copy that is deleted afterwards; with the default store they go to <repo>/mlartifacts.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(experiment) is None and "MLFLOW_TRACKING_URI" not in os.environ:
        try:
            mlflow.create_experiment(experiment, artifact_location=(main_repo_root() / "mlartifacts").as_uri())
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by a parallel worker
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
