"""The DVC experiment queue as `fkstudy sweep` (and the integration tests) drive it.

- `start`: `dvc queue start -j N`, returning once the workers are launched. DVC launches each worker from a
  forked helper that keeps the caller's stdout/stderr open until its worker exits, so a caller reading
  `queue start` through pipes waits for every worker's exit (measured: 16 s for a 5 s experiment), and for
  ever when a worker hangs or misses its shutdown on DVC's file broker (dvc#10428): a CI run waited 30 min
  there. Its output goes to .dvc/tmp/queue-start.log instead.
- `tasks`: the task states `dvc queue status` prints.
- `wait`: poll until the tasks are done. Tasks left Queued, nothing Running and no worker process alive
  (`workers`) for a few polls in a row have no worker to take them (the last one shut down as they arrived,
  dvc#10562): the workers are started again, as a user would.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .errors import StudyError
from .review import revs

STATES = ("Queued", "Running", "Success", "Failed")
START_LOG = Path(".dvc") / "tmp" / "queue-start.log"


class QueueError(StudyError):
    """`dvc queue` failed, or its tasks did not finish in time."""


def start(repo: Path, jobs: int, env: dict | None = None) -> None:
    """`dvc queue start -j JOBS` without our pipes (see the module's docstring); returns when they are launched."""
    log = repo / START_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], cwd=repo,
                              stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, timeout=600,
                              env=revs.dvc_env(env))
    if proc.returncode != 0:
        raise QueueError(f"dvc queue start -j {jobs} failed (exit {proc.returncode}); its output: {log}")


def status(repo: Path, env: dict | None = None) -> str:
    return revs.dvc(repo, "queue", "status", env=env).stdout


def tasks(text: str) -> dict[str, tuple[str, str]]:
    """{task rev: (experiment name, state)} from `dvc queue status` output (a name may appear more than once:
    tasks of earlier runs stay listed until `dvc queue remove`)."""
    found = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[-1] in STATES:
            found[cols[0]] = (cols[1], cols[-1])
    return found


def workers(repo: Path) -> list[int]:
    """The live queue workers of the repository (from DVC's pid files; a pid since reused by another process
    is not one). Linux only (/proc): elsewhere every pid file's process counts as alive."""
    found = []
    for pidfile in (repo / ".dvc" / "tmp" / "exps" / "celery").glob("*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline")
            if not Path("/proc/self").exists() or b"queue-worker" in cmdline.read_bytes():
                found.append(pid)
        except (ValueError, OSError):
            continue
    return found


def wait(repo: Path, jobs: int, names: list[str] | None = None, ignore: set[str] = frozenset(),
         poll: float = 10.0, seconds: float | None = None, stall_polls: int = 3, env: dict | None = None,
         log=print) -> tuple[dict[str, str], str]:
    """Poll `dvc queue status` until none of `names` (every task not in `ignore` when None) is Queued or
    Running, or one has Failed; ({name: state}, the last status). Restarts a stalled queue (module docstring).
    QueueError after `seconds`."""
    deadline = None if seconds is None else time.monotonic() + seconds
    stalled = 0
    while True:
        text = status(repo, env)
        all_tasks = tasks(text)
        states = {name: state for task, (name, state) in all_tasks.items() if task not in ignore}
        mine = {n: s for n, s in states.items() if names is None or n in names}
        pending = [n for n, s in mine.items() if s in ("Queued", "Running")]
        if not pending or "Failed" in mine.values():
            return mine, text
        running = any(state == "Running" for _, state in all_tasks.values())
        stalled = 0 if running or workers(repo) else stalled + 1
        if stalled >= stall_polls:
            log(f"queue: {len(pending)} task(s) Queued, none Running and no worker for {stall_polls} polls: "
                f"starting the workers again", flush=True)
            start(repo, jobs, env)
            stalled = 0
        if deadline is not None and time.monotonic() > deadline:
            raise QueueError(f"queue not done after {seconds:.0f} s: {', '.join(pending)} still pending")
        time.sleep(poll)
