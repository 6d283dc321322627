"""Integration fixtures: a temporary git+DVC copy of this repository on a small real subset."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from bench import _repo
from fkstudy import exp_queue
from bench._repo import CSV, ROOT, SMALL_PARAMS, copy_repo, git_commit_all, set_params  # noqa: F401  (tests import them from here)


def real_data_dir() -> Path:
    try:
        return _repo.real_data_dir()
    except _repo.NoRealData as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip("real Flipkart data not available")


def make_subset(dest: Path, per_class: int, seed: int = 0) -> Path:
    """per_class real products of each category (always including the products whose photo is missing)."""
    return _repo.make_subset(dest, per_class, seed, src=real_data_dir())


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory) -> Path:
    """A git repo copy of this checkout, params pointed at a 10-per-class real subset, nothing run yet."""
    base = tmp_path_factory.mktemp("study")
    data = make_subset(base / "data_subset", per_class=10)
    repo = copy_repo(base / "repo")
    for out in ("metrics", "plots", "reports"):  # outputs must come from this run, not the copied ones
        shutil.rmtree(repo / out, ignore_errors=True)
    (repo / "dvc.lock").unlink(missing_ok=True)
    set_params(repo, {**SMALL_PARAMS, "data.raw_dir": str(data)})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}",
           "FKSTUDY_PARAMS_AUDIT": str(base / "params_audit.jsonl")}  # every params key each stage reads
    git_commit_all(repo)
    os.environ.update(env)
    return repo


@pytest.fixture(scope="session")
def reproduced(small_repo) -> tuple[Path, str]:
    """`dvc repro` of the whole pipeline in small_repo, once per session (shared by every module):
    the repo and dvc's output. Tests that change the workspace work on a copy (see test_workflow)."""
    proc = run(["dvc", "repro"], small_repo)
    return small_repo, proc.stdout + proc.stderr


def run_queue(repo: Path, env: dict, jobs: int, seconds: float = 1500) -> str:
    """fkstudy.exp_queue: `dvc queue start -j JOBS` (not through our pipes, which a worker's launcher would hold
    until that worker exits), then `dvc queue status` until nothing is Queued or Running (a stalled queue is
    started again); the final status. On timeout: what the stuck queue shows (queue_evidence), workers stopped."""
    exp_queue.start(repo, jobs, env=env)
    try:
        _, status = exp_queue.wait(repo, jobs, poll=5, seconds=seconds, env=env)
    except exp_queue.QueueError as exc:
        status = exp_queue.status(repo, env)
        raise AssertionError(f"{exc}:\n{status}\n{queue_evidence(repo, env, status)}") from None
    return status


def queue_evidence(repo: Path, env: dict, status: str) -> str:
    """What a stuck queue leaves to read, gathered before its workers are killed: each worker's log, the
    output of every experiment still Running, and the processes of each worker's group."""
    parts = [f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
             for p in sorted((repo / ".dvc/tmp/exps/celery").glob("*.out"))]
    for name, state in exp_queue.tasks(status).values():
        if state == "Running":
            out = subprocess.run(["dvc", "queue", "logs", name], cwd=repo, env=env, capture_output=True,
                                 text=True, timeout=120).stdout
            parts.append(f"--- dvc queue logs {name}\n{out[-3000:]}")
    ps = subprocess.run(["ps", "-eo", "pid,pgid,etime,stat,args", "--forest"], capture_output=True, text=True).stdout
    groups = {str(g) for g in worker_groups(repo).values()}
    parts.append("--- worker process groups\n" + "\n".join(
        line for line in ps.splitlines() if len(line.split()) > 1 and line.split()[1] in groups))
    stop_workers(repo)
    return "\n".join(parts)


def worker_groups(repo: Path) -> dict[int, int]:
    """{pid: process group} of this repository's live DVC queue workers (exp_queue.workers; one gone since is
    left out)."""
    groups = {}
    for pid in exp_queue.workers(repo):
        try:
            groups[pid] = os.getpgid(pid)
        except ProcessLookupError:
            continue
    return groups


def stop_workers(repo: Path) -> list[int]:
    """Kill what is left of this repository's DVC queue workers (each with its launcher, one process group):
    a worker that missed its shutdown would otherwise idle for ever after the test. The pids killed."""
    killed = []
    for pid, group in worker_groups(repo).items():
        if group == os.getpgrp():   # never our own group
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(group, signal.SIGKILL)
        killed.append(pid)
    return killed
