"""`fkstudy.exp_queue.start` returns while the queue still works, and the queue helpers the integration
tests share (run_queue, stop_workers) wait for the experiment and leave no worker behind.

DVC launches each queue worker from a forked helper that keeps the caller's stdout/stderr open until the
worker exits; a caller that captured `dvc queue start` therefore waited for the workers, and for 30 min
in CI when one never got its shutdown. Here the experiment's stage blocks until the test creates a file,
so `exp_queue.start` can only return before it finishes if it does not wait for the workers."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fkstudy import exp_queue

from .conftest import run_queue, stop_workers

pytestmark = pytest.mark.integration
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def dvc(repo: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def gated_repo(tmp_path):
    """A git+DVC repo whose one stage waits for `go` (outside the repo) before writing its output."""
    repo, go = tmp_path / "repo", tmp_path / "go"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    (repo / "params.yaml").write_text("x: 1\n")
    dvc(repo, "stage", "add", "-q", "-n", "gated", "-p", "x", "-o", "out.txt",
        f"while [ ! -e {go} ]; do sleep 0.2; done; echo done > out.txt")
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "gated stage"], cwd=repo, check=True)
    yield repo, go
    go.touch()
    stop_workers(repo)


def test_start_queue_returns_while_the_experiment_still_runs(gated_repo):
    repo, go = gated_repo
    dvc(repo, "exp", "run", "--queue", "-n", "gated-exp", "-S", "x=2")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    exp_queue.start(repo, 1, env=env)
    status = exp_queue.status(repo, env)
    assert "gated-exp" in status and "Success" not in status, status   # the stage cannot have finished
    go.touch()
    status = run_queue(repo, env, jobs=1, seconds=300)   # a second start finds the worker busy and adds none
    assert "Success" in status, status
    assert "gated-exp" in dvc(repo, "exp", "list", "--name-only").split()
    pids = [int(p.read_text().strip()) for p in (repo / ".dvc/tmp/exps/celery").glob("*.pid")]
    assert pids
    stop_workers(repo)
    deadline = time.monotonic() + 30
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive, f"queue worker(s) {alive} outlived stop_workers"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"   # a zombie has exited; only its parent's wait is missing


def test_wait_starts_the_workers_again_when_tasks_wait_with_none_running(gated_repo):
    """No worker at all (as when the last one shut down while the task arrived): wait() starts them."""
    repo, go = gated_repo
    go.touch()
    dvc(repo, "exp", "run", "--queue", "-n", "orphan-exp", "-S", "x=3")
    said = []
    states, status = exp_queue.wait(repo, 1, ["orphan-exp"], poll=1, seconds=300, stall_polls=2,
                                    log=lambda msg, **_: said.append(msg))
    assert states == {"orphan-exp": "Success"}, status
    assert len(said) == 1 and "starting the workers again" in said[0], said
