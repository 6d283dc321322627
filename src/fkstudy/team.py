"""Working as a team through the DVC remote: two commands that close gaps of DVC 3.

`fkstudy push [-r REMOTE]`: `dvc push --run-cache`, then the outputs of every run the run cache records.
DVC 3 pushes the run records but only the outputs the workspace references, and never those declared
`cache: false` (every stage's metrics and plots here): a teammate's `dvc repro --pull` then finds A's record
of a param set but not its outputs, and runs the stage again (measured). With the outputs pushed too, it
restores them ("Stage ... is cached - skipping run").

`fkstudy exp-pull <git_remote> <experiment>...`: `dvc exp pull`, then a clear word when an experiment came
without its outputs.

`dvc exp pull` fetches an experiment's git ref, then its outputs from the DVC remote. When whoever ran it
pushed the ref only (`dvc exp push --no-cache`) or the outputs never reached the remote, DVC exits 0 after a
warning that lists md5 hashes, and a later `dvc exp apply` fails half-way ("Checkout failed ... Is your cache
up to date?"), leaving the workspace without those outputs. This command pulls, then checks every cached
output recorded in each experiment's dvc.lock against the local cache and names the ones missing.

Exit status 0: every experiment is here with its outputs (push: everything pushed); 1: some outputs are
missing (one line per experiment on stderr, `error: ...`; push: some objects failed); 2: the DVC command
itself failed or an experiment is unknown.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .review import revs

EXIT_MISSING, EXIT_FAILED = 1, 2
SHOWN = 6  # output paths named per experiment before "and N more"


def add_push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remote", "-r", default=None, help="the DVC remote (default: the default one)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="parallel uploads (default: DVC's)")
    p.add_argument("--repo", default=".", help="the repository (default: the one holding the current folder)")


def push_run_outputs(repo: Path, remote: str | None = None, jobs: int | None = None) -> tuple[int, int, int]:
    """Push the outputs of every run in the local run cache whose outputs are all in the local cache (a run
    pulled from a teammate without its outputs is skipped). Returns (runs, objects uploaded, objects failed).

    Uses DVC's run cache as `dvc repro` does (StageCache: _load_cache, _create_stage, get_used_objs), which
    builds each recorded stage with every output cached, `cache: false` ones included: what a restore needs."""
    from contextlib import chdir

    from dvc.repo import Repo

    with chdir(repo), Repo(str(repo)) as dvc_repo:  # DVC builds the recorded stages relative to the cwd
        runs = dvc_repo.stage_cache
        complete = []
        for record in sorted(Path(runs.cache_dir).glob("*/*/*")):
            entry = runs._load_cache(record.parent.name, record.name) if record.is_file() else None
            if entry and runs._create_stage(entry).outs_cached():
                complete.append((record.parent.name, record.name))
        used = runs.get_used_objs(complete)
        objs = set().union(*used.values()) if used else set()
        result = dvc_repo.cloud.push(objs, jobs=jobs, remote=remote)
        return len(complete), len(result.transferred), len(result.failed)


def run_push(args) -> int:
    try:
        repo = revs.repo_root(Path(args.repo).resolve())
        extra = (["-r", args.remote] if args.remote else []) + (["-j", str(args.jobs)] if args.jobs else [])
        print(revs.dvc(repo, "push", "--run-cache", *extra).stdout.strip())
        runs, uploaded, failed = push_run_outputs(repo, args.remote, args.jobs)
    except revs.ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # DVC's own errors (remote unreachable, ...): one line, no traceback
        print(f"error: pushing the run cache's outputs: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_FAILED
    if failed:
        print(f"error: {failed} objects of the run cache's outputs failed to upload (run `fkstudy push` again)",
              file=sys.stderr)
        return EXIT_MISSING
    print(f"run cache: the outputs of {runs} runs are on the remote ({uploaded} objects uploaded now)")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("git_remote", help="the git remote the experiments were pushed to (e.g. origin)")
    p.add_argument("experiments", nargs="+", metavar="experiment", help="experiment names (as in `dvc exp show`)")
    p.add_argument("--remote", "-r", default=None,
                   help="the DVC remote to pull outputs from (default: the default one)")
    p.add_argument("--repo", default=".", help="the repository (default: the one holding the current folder)")


def in_cache(cache: Path, md5: str) -> bool:
    """An object of DVC's cache (3.x layout): a file, or a directory listing and every file it lists."""
    path = cache / "files" / "md5" / md5[:2] / md5[2:]
    if not path.is_file():
        return False
    if not md5.endswith(".dir"):
        return True
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all(in_cache(cache, e["md5"]) for e in entries if e.get("md5"))


def missing_outputs(repo: Path, rev: revs.Rev, cache: Path) -> list[str]:
    """Outputs in `rev`'s dvc.lock that DVC caches (not committed to git) and the local cache lacks."""
    tracked = set(revs.git(repo, "ls-tree", "-r", "--name-only", rev.sha or "HEAD").splitlines())
    folders = {p.rsplit("/", i)[0] for p in tracked for i in range(1, p.count("/") + 1)}
    missing = set()
    for stage in (revs.read_lock(repo, rev).get("stages") or {}).values():
        for out in stage.get("outs") or []:
            path, md5 = out.get("path"), out.get("md5")
            if not path or not md5 or path in tracked or path in folders:  # `cache: false`: it is in git
                continue
            if not in_cache(cache, md5):
                missing.add(path)
    return sorted(missing)


def describe(name: str, missing: list[str], git_remote: str) -> str:
    shown = ", ".join(missing[:SHOWN]) + (f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else "")
    return (f"experiment {name}: {len(missing)} outputs are neither in the local cache nor on the DVC remote "
            f"(the experiment was pushed without them): {shown}. Whoever ran it: `dvc exp push {git_remote} {name}` "
            f"(without --no-cache), then pull again; or re-run it here (`dvc exp apply` now would fail)")


def run(args) -> int:
    try:
        repo = revs.repo_root(Path(args.repo).resolve())
        pull = ["exp", "pull", args.git_remote, *args.experiments] + (["--remote", args.remote] if args.remote else [])
        revs.dvc(repo, *pull)
        cache = Path(revs.dvc(repo, "cache", "dir").stdout.strip())
        found = {name: revs.resolve(repo, name) for name in args.experiments}
    except revs.ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    status = 0
    for name, rev in found.items():
        missing = missing_outputs(repo, rev, cache)
        if missing:
            print(f"error: {describe(name, missing, args.git_remote)}", file=sys.stderr)
            status = EXIT_MISSING
        else:
            print(f"{name}: pulled with its outputs ({rev.sha[:7]})")
    return status
