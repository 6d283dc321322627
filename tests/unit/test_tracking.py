"""MLflow helpers: tracking URI resolution (also from DVC temp copies), tags, params in a real SQLite store."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fkstudy import tracking

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]


def _git_repo(path: Path, commit: bool) -> str:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run([*GIT, "init", "-q"], cwd=path, check=True)
    if not commit:
        return ""
    (path / "dvc.yaml").write_text("stages: {}\n")
    subprocess.run([*GIT, "add", "dvc.yaml"], cwd=path, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "init"], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                          check=True).stdout.strip()


def at_repo(env, path):
    """Run from `path` as a stage would: it holds a dvc.yaml and is the cwd."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dvc.yaml").write_text("stages: {}\n")
    env.chdir(path)


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "MLFLOW_EXPERIMENT_ID",
                "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_tracking_uri_honours_env(clean_env):
    clean_env.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/mlflow/shared.db")
    assert tracking.tracking_uri() == "sqlite:////srv/mlflow/shared.db"


def test_default_uri_is_sqlite_at_repo_root(clean_env, tmp_path):
    at_repo(clean_env, tmp_path)
    clean_env.setenv("DVC_ROOT", "/somewhere/else")  # DVC's value in a temp copy: must not be trusted
    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db?timeout={tracking.SQLITE_TIMEOUT_S}"
    assert uri.startswith("sqlite:////")  # absolute path: a relative one would land in a DVC temp copy


def test_default_uri_found_from_a_subdirectory(clean_env, tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "stages" / "deep").mkdir(parents=True)
    clean_env.chdir(tmp_path / "stages" / "deep")
    assert tracking.tracking_uri().startswith(f"sqlite:///{tmp_path.resolve()}/mlflow.db")


@pytest.mark.parametrize("sub", [".dvc/tmp/exps/tmpx1y2z3", ".dvc/tmp/exps/run/abc123/nested"])
def test_main_repo_root_maps_dvc_temp_copies_back(clean_env, tmp_path, sub):
    repo = tmp_path / "repo"
    at_repo(clean_env, repo / sub)
    assert tracking.main_repo_root() == repo.resolve()
    assert tracking.tracking_uri().startswith(f"sqlite:///{repo.resolve()}/mlflow.db?")


def test_main_repo_root_is_repo_root_otherwise(clean_env, tmp_path):
    at_repo(clean_env, tmp_path / "exps" / "tmp")  # 'exps' alone is not a DVC temp copy
    assert tracking.main_repo_root() == (tmp_path / "exps" / "tmp").resolve()


def test_git_commit(clean_env, tmp_path):
    sha = _git_repo(tmp_path / "committed", commit=True)
    clean_env.chdir(tmp_path / "committed")
    assert len(sha) == 40 and tracking.git_commit() == sha
    _git_repo(tmp_path / "fresh", commit=False)  # `git rev-parse HEAD` prints "HEAD" and exits 128 here
    clean_env.chdir(tmp_path / "fresh")
    assert tracking.git_commit() == "unknown"


def test_standard_tags(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    clean_env.setenv("DVC_EXP_NAME", "curly-bass")
    tags = tracking.standard_tags("train@vgg16", seed=3)
    assert tags["stage"] == "train@vgg16" and tags["dvc_exp_name"] == "curly-bass" and tags["seed"] == "3"
    assert tags["dvc_exp_baseline_rev"] == "" and "git_commit" in tags


def test_flatten():
    assert tracking.flatten({"a": 1, "b": {"c": [1, 2], "d": {"e": "x"}}}) == {"a": 1, "b.c": [1, 2], "b.d.e": "x"}


@pytest.mark.slow  # creating the SQLite store runs MLflow's schema migrations (~3-8 s here)
def test_run_records_params_tags_and_nested_runs(clean_env, tmp_path):
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # mlflow keeps the URI and active experiment in module globals: restore them afterwards
    clean_env.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    clean_env.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    sha = _git_repo(tmp_path / "repo", commit=True)
    clean_env.chdir(tmp_path / "repo")  # git_commit() reads the repo the stage runs in (its cwd)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    clean_env.setenv("MLFLOW_TRACKING_URI", uri)
    clean_env.setenv("DVC_EXP_NAME", "exp-unit")
    clean_env.setenv("DVC_EXP_BASELINE_REV", "b" * 40)
    params = {"seed": 42, "train": {"epochs": 3, "lr": 0.001, "backbones": ["vgg16", "clip"]}}
    with tracking.run("fk-test", "multiseed", "multiseed-vgg16", params, tags={"backbone": "vgg16"}) as parent:
        mlflow.log_metric("test_accuracy", 0.8)
        with tracking.run("fk-test", "multiseed", "seed-1", {"seed": 1}, nested=True) as child:
            mlflow.log_metric("test_accuracy", 0.75, step=0)
    assert mlflow.active_run() is None

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("fk-test")
    assert exp is not None
    run = client.get_run(parent.info.run_id)
    assert run.info.experiment_id == exp.experiment_id and run.info.status == "FINISHED"
    assert run.info.run_name == "multiseed-vgg16"
    assert run.data.params == {"seed": "42", "train.epochs": "3", "train.lr": "0.001",
                               "train.backbones": "['vgg16', 'clip']"}
    tags = run.data.tags
    assert tags["stage"] == "multiseed" and tags["git_commit"] == sha and tags["dvc_exp_name"] == "exp-unit"
    assert tags["dvc_exp_baseline_rev"] == "b" * 40 and tags["backbone"] == "vgg16"
    assert run.data.metrics == {"test_accuracy": 0.8}
    kid = client.get_run(child.info.run_id)
    assert kid.data.tags["mlflow.parentRunId"] == parent.info.run_id and kid.data.params == {"seed": "1"}
    found = client.search_runs([exp.experiment_id], filter_string="tags.dvc_exp_name = 'exp-unit'")
    assert {r.info.run_id for r in found} == {parent.info.run_id, child.info.run_id}
    assert Path(tmp_path / "mlflow.db").exists() and not (tmp_path / "repo" / "mlflow.db").exists()


def test_metric_key_is_accepted_by_mlflow():
    assert tracking.metric_key("per_class.Kitchen & Dining.f1") == "per_class.Kitchen and Dining.f1"
    assert tracking.metric_key("a(b)/c-d e") == "a_b_/c-d e"


def test_log_metrics_sends_numbers_only_flattened(monkeypatch):
    import mlflow
    import numpy as np

    sent = []
    monkeypatch.setattr(mlflow, "log_metrics", lambda d: sent.append(d))
    tracking.log_metrics({"accuracy": 0.9, "n": 3, "flag": True, "name": "x",
                          "per_class": {"Kitchen & Dining": {"f1": np.float32(0.5), "support": np.int64(4)}}},
                         prefix="test_")
    assert sent == [{"test_accuracy": 0.9, "test_n": 3.0, "test_per_class.Kitchen and Dining.f1": 0.5,
                     "test_per_class.Kitchen and Dining.support": 4.0}]
    tracking.log_metrics({"name": "x", "flag": False})
    assert len(sent) == 1  # nothing numeric: no call at all
