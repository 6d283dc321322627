"""git and DVC I/O of the review: which commit a revision names, a file at a revision, and DVC's own
`params diff`, `metrics diff`, `plots diff` and `status`.

A revision is the workspace, a git revision (branch, tag, sha, `HEAD~1`, `origin/main`) or a DVC
experiment name: an experiment is a git commit under `refs/exps/<xx>/<baseline sha>/<name>`, whose parent
is its baseline, so `git show <sha>:<path>` reads its files and DVC's commands take its sha.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import StudyError
from ..params import dvc_yaml

WORKSPACE = "workspace"
DEFAULT_BRANCHES = ("main", "origin/main", "master", "origin/master")
_EXP_REF = re.compile(r"^refs/exps/[0-9a-f]{2}/(?P<baseline>[0-9a-f]{38})/(?P<name>[^/]+)$")
_FAILED_REVS = re.compile(r"DVC failed to load some (metrics|plots|params) for following revisions: (.+?)\.?$", re.MULTILINE)


class ReviewError(StudyError):
    """A revision that names nothing, or a git / DVC command that failed."""


@dataclass(frozen=True)
class Rev:
    spec: str  # as the user wrote it ("workspace" for the workspace)
    sha: str | None = None  # None: the workspace
    kind: str = "git"  # "workspace", "git", "experiment"

    @property
    def label(self) -> str:
        if self.sha is None:
            return "the workspace"
        name = f"`{self.spec}` ({self.sha[:7]})" if self.spec[:7] != self.sha[:7] else f"`{self.sha[:7]}`"
        return f"experiment {name}" if self.kind == "experiment" else name


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise ReviewError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout if proc.returncode == 0 else ""


def repo_root(start: Path) -> Path:
    top = git(start, "rev-parse", "--show-toplevel", check=False).strip()
    if not top or not (Path(top) / "dvc.yaml").exists():
        raise ReviewError(f"{start}: not inside a git repository with a dvc.yaml")
    return Path(top)


def experiments(repo: Path) -> dict[str, list[tuple[str, str]]]:
    """experiment name -> [(sha, baseline sha)] from the refs DVC keeps (one name may exist per baseline)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for line in git(repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps", check=False).splitlines():
        sha, _, ref = line.partition(" ")
        m = _EXP_REF.match(ref)
        if m:
            out.setdefault(m["name"], []).append((sha, ref.split("/")[2] + m["baseline"]))
    return out


def commit_of(repo: Path, spec: str) -> str | None:
    sha = git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}", check=False).strip()
    return sha or None


def resolve(repo: Path, spec: str | None) -> Rev:
    """The workspace (None, "" or "workspace"), a git revision, or a DVC experiment name (a git revision of
    the same spelling wins). An experiment name used over several baselines must be the one of HEAD."""
    if not spec or spec == WORKSPACE:
        return Rev(WORKSPACE, None, "workspace")
    sha = commit_of(repo, spec)
    if sha:
        return Rev(spec, sha, "git")
    found = experiments(repo).get(spec, [])
    if len(found) > 1:
        head = commit_of(repo, "HEAD")
        found = [f for f in found if f[1] == head] or found
    if len(found) == 1:
        return Rev(spec, found[0][0], "experiment")
    if found:
        raise ReviewError(f"experiment {spec!r} exists over {len(found)} baselines; give its sha "
                          f"({', '.join(s[:7] for s, _ in found)})")
    raise ReviewError(f"{spec!r} is neither a git revision nor a DVC experiment (see `dvc exp show`)")


def baseline(repo: Path, rev: Rev) -> Rev:
    """An experiment's baseline commit (its parent)."""
    sha = commit_of(repo, f"{rev.sha}^")
    if not sha:
        raise ReviewError(f"experiment {rev.spec!r} has no baseline commit")
    return Rev(sha[:7], sha, "git")


def default_base(repo: Path, target: Rev) -> Rev:
    """The base when none is given: an experiment's baseline; else the merge-base of HEAD with the first
    of main, origin/main, master, origin/master that exists (on that branch itself: HEAD); else HEAD."""
    if target.kind == "experiment":
        return baseline(repo, target)
    head = target.sha or "HEAD"
    for branch in DEFAULT_BRANCHES:
        if commit_of(repo, branch):
            sha = git(repo, "merge-base", branch, head, check=False).strip()
            if sha:
                return Rev(f"merge-base of {branch}", sha, "git")
    return resolve(repo, "HEAD")


def read_at(repo: Path, rev: Rev, path: str) -> str | None:
    """A file's text at a revision (None if it is not there)."""
    if rev.sha is None:
        f = repo / path
        return f.read_text(encoding="utf-8") if f.is_file() else None
    proc = subprocess.run(["git", "show", f"{rev.sha}:{path}"], cwd=repo, capture_output=True, check=False)
    return proc.stdout.decode("utf-8") if proc.returncode == 0 else None


def read_lock(repo: Path, rev: Rev) -> dict:
    text = read_at(repo, rev, "dvc.lock")
    return (dvc_yaml(text) or {}) if text else {}


def dvc_env(env: dict | None = None) -> dict:
    """The environment every dvc command of ours runs in: `env` (default: ours) without DVC's analytics."""
    return {**(os.environ if env is None else env), "DVC_NO_ANALYTICS": "1"}


def dvc(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`dvc <args>` with this interpreter's DVC, no analytics, in the repository."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True,
                          env=dvc_env(env), check=False)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.strip().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")]   # not DVC's closing "Having any troubles?"
        raise ReviewError(f"dvc {' '.join(args)}: {(errors or lines or [str(proc.returncode)])[-1]}")
    return proc


def _revs(base: Rev, target: Rev) -> list[str]:
    return [base.sha or "HEAD"] + ([target.sha] if target.sha else [])  # one rev: against the workspace


def failed_revisions(stderr: str) -> list[str]:
    """The revisions DVC says it could not load (a warning on stderr, not an error)."""
    found = []
    for m in _FAILED_REVS.finditer(stderr):
        for rev in m[2].split(","):
            rev = rev.strip().strip("'\"")
            found.append(rev[:7] if re.fullmatch(r"[0-9a-f]{40}", rev) else rev)
    return found


def params_diff(repo: Path, base: Rev, target: Rev) -> dict:
    return json.loads(dvc(repo, "params", "diff", *_revs(base, target), "--json").stdout or "{}")


def metrics_diff(repo: Path, base: Rev, target: Rev) -> tuple[dict, list[str]]:
    """`dvc metrics diff --all --json` (unchanged values too: the spreads of unchanged metrics), and the
    revisions DVC could not load metrics from."""
    proc = dvc(repo, "metrics", "diff", *_revs(base, target), "--all", "--json")
    return json.loads(proc.stdout or "{}"), failed_revisions(proc.stderr)


def plots_diff(repo: Path, base: Rev, target: Rev, targets: list[str], out_dir: Path) -> None:
    """`dvc plots diff <base> [<target>] --targets ... -o <out_dir>`: writes out_dir/index.html with
    both revisions of each plot."""
    dvc(repo, "plots", "diff", *_revs(base, target), "--targets", *targets, "-o", str(out_dir))


def stale_stages(repo: Path) -> list[str]:
    """Stages whose recorded state in the workspace's dvc.lock is out of date (`dvc status`)."""
    status = json.loads(dvc(repo, "status", "--json").stdout or "{}")
    return sorted(status) if isinstance(status, dict) else []
