"""Experiments never move the production alias, on the small real subset in a committed copy on `main`:
`dvc repro` of `register` on main makes v1 the champion; a queued experiment (`dvc exp run --queue ...
-S fusion.n_splits=3`, run by `dvc queue start` in a temp copy under .dvc/tmp/exps) registers v2 as
`challenger`, tagged with its experiment name, and leaves champion on v1 — measured before the fix:
the experiment moved champion to its version (`register.promote: always`). Then `python -m fkstudy
promote --alias challenger --yes` moves it explicitly, logged on the version and in an MLflow run."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import mlflow
import pytest

from .conftest import run, run_queue, stop_workers

pytestmark = pytest.mark.integration
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
EXP = "promo-exp"
NAME = "flipkart-product-classifier"


@pytest.fixture(scope="module")
def main_repo(small_repo, tmp_path_factory) -> tuple[Path, dict]:
    """small_repo with `register` reproduced, copied (sharing its DVC cache), on branch main, committed; a
    fresh tracking store of its own."""
    run(["dvc", "repro", "register"], small_repo)
    dest = tmp_path_factory.mktemp("promotion") / "repo"
    shutil.copytree(small_repo, dest, symlinks=True,
                    ignore=lambda d, names: {"cache", "tmp"} & set(names) if Path(d).name == ".dvc" else set())
    run(["dvc", "cache", "dir", "--local", str(small_repo / ".dvc" / "cache")], dest)
    run(["git", "checkout", "-q", "-B", "main"], dest)
    run([*GIT, "add", "-A"], dest)
    run([*GIT, "commit", "-qm", "registered subset"], dest)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{dest.parent / 'promotion.db'}", "DVC_EXP_NAME": ""}
    yield dest, env
    stop_workers(dest)


def client(env: dict) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


def fkstudy(repo: Path, env: dict, *args):
    return run([sys.executable, "-m", "fkstudy", *args], repo, env={**env, "PYTHONPATH": str(repo / "src")},
               check=False)


@pytest.fixture(scope="module")
def champion_then_experiment(main_repo):
    repo, env = main_repo
    # the committed pipeline on main: a `dvc repro` of register (forced: its outputs are up to date)
    run(["dvc", "repro", "-f", "-s", "register"], repo, env=env)
    first = json.loads((repo / "reports/register.json").read_text())
    # reports/register.json (version, run id) is git-ignored: a forced register leaves git clean; commit what
    # did change, if anything, so the experiment's baseline is this state
    run([*GIT, "commit", "--allow-empty", "-qam", "register on main"], repo)
    # a queued experiment: its own fusion settings (never run before, so nothing comes from the run cache)
    run(["dvc", "exp", "run", "--queue", "register", "-n", EXP, "-S", "fusion.n_splits=3", "-S", "fusion.n_repeats=1"],
        repo, env=env)
    status = run_queue(repo, {**os.environ, **env}, jobs=1)
    logs = run(["dvc", "queue", "logs", EXP], repo, env=env, check=False).stdout
    assert re.search(rf"{EXP}\s.*\bSuccess\b", status), f"{status}\n{logs[-4000:]}"
    assert "Running stage 'register'" in logs, logs[-4000:]
    return first, logs


def test_the_pipeline_on_main_makes_the_champion(main_repo, champion_then_experiment):
    _, env = main_repo
    first, _ = champion_then_experiment
    assert first["promoted"] and first["git_branch"] == "main" and not first["dvc_exp_name"], first
    v = client(env).get_model_version_by_alias(NAME, "champion")
    assert int(v.version) == first["version"] and v.tags["promoted_by"] == "pipeline"


def test_a_queued_experiment_registers_a_challenger_and_leaves_champion(main_repo, champion_then_experiment):
    repo, env = main_repo
    first, _ = champion_then_experiment
    c = client(env)
    assert int(c.get_model_version_by_alias(NAME, "champion").version) == first["version"]
    exp_v = c.get_model_version_by_alias(NAME, "challenger")
    assert int(exp_v.version) == first["version"] + 1
    assert exp_v.tags["dvc_exp_name"] == EXP and exp_v.tags["dvc_exp_baseline_rev"]
    assert "experiments never move 'champion'" in exp_v.tags["not_promoted_reason"]
    # the experiment is committed in its own ref (reports/register.json is git-ignored: per-run registry facts)
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    assert [r for r in refs if r.endswith(f"/{EXP}")], refs
    assert run(["git", "check-ignore", "reports/register.json"], repo).returncode == 0
    # the workspace on main is untouched
    assert json.loads((repo / "reports/register.json").read_text())["version"] == first["version"]


def test_promote_moves_champion_explicitly_and_logs_it(main_repo, champion_then_experiment):
    repo, env = main_repo
    first, _ = champion_then_experiment
    c = client(env)
    missing = fkstudy(repo, env, "promote", "--version", "99", "--yes")
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: model 'flipkart-product-classifier' "
                                                                         "has no version 99"), missing.stderr
    proc = fkstudy(repo, env, "promote", "--alias", "challenger", "--yes")
    assert proc.returncode == 0, proc.stderr
    target = first["version"] + 1
    assert f"v{first['version']} -> v{target}" in proc.stdout
    v = c.get_model_version_by_alias(NAME, "champion")
    assert int(v.version) == target and v.tags["promoted_from_version"] == str(first["version"])
    assert v.tags["promoted_by"] and v.tags["promoted_at"] and v.tags["promoted_via"] == "python -m fkstudy promote"
    r = c.get_run(v.tags["promotion_run"])
    assert r.data.tags["stage"] == "promote" and r.data.params["to_version"] == str(target)
    assert r.data.params["from_version"] == str(first["version"]) and r.info.status == "FINISHED"
