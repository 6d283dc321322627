"""Benchmark: peak memory, wall and CPU time of each DVC stage, against the 8 GB budget (issue 6).

Each stage runs as `dvc repro -f --single-item <stage>`, one after the other in pipeline order. While it
runs, the resident memory of its whole process tree (dvc + the stage's python) is sampled every
`--interval` seconds (psutil, else /proc); when it ends, the kernel's high-water mark of the largest
single process in the tree (wait4's ru_maxrss, exact, not sampled) and its CPU seconds are read too.
`cores` = CPU seconds / wall seconds: a stage honouring `n_jobs` stays at or below n_jobs (plus a little
for dvc itself).

    python bench/bench_memory.py                         # every stage, real data, in a temporary copy
    python bench/bench_memory.py ingest prep_images      # only these stages (their inputs must exist)
    python bench/bench_memory.py --repo . cluster@text_bow   # in place, in this checkout

The temporary copy holds the checkout's files (as tests/integration does), dvc.lock, and a copy of the
DVC outputs already in the workspace (data/interim, data/features, weights, models: hard links where
possible), so a single stage runs without its upstream; params point at the real data. Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from integration.conftest import copy_repo, set_params  # noqa: E402

OUTPUT_DIRS = ("data/interim", "data/features", "weights", "models")
MB = 2 ** 20


# --------------------------------------------------------------------------- process-tree memory
def _tree_rss_psutil(pid: int) -> tuple[int, int]:
    """(sum of RSS over the tree, number of threads of its largest process)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total, biggest, threads = 0, 0, 0
    for p in procs:
        try:
            rss = p.memory_info().rss
            total += rss
            if rss > biggest:
                biggest, threads = rss, p.num_threads()
        except psutil.NoSuchProcess:
            continue
    return total, threads


def _tree_rss_proc(pid: int) -> tuple[int, int]:
    """The same from /proc (Linux), for machines without psutil."""
    parents: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(d))
    todo, total, biggest, threads, page = [pid], 0, 0, 0, os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        todo += parents.get(p, [])
        try:
            rss = int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
            n_threads = len(os.listdir(f"/proc/{p}/task"))
        except (OSError, IndexError, ValueError):
            continue
        total += rss
        if rss > biggest:
            biggest, threads = rss, n_threads
    return total, threads


try:
    import psutil  # noqa: F401  (installed with dvc)

    tree_rss = _tree_rss_psutil
    SAMPLER = "psutil"
except ImportError:  # pragma: no cover
    tree_rss = _tree_rss_proc
    SAMPLER = "/proc"


def measure(cmd: list[str], cwd: Path, interval: float, log_path: Path) -> dict:
    """Run cmd; sample its process tree's RSS until it exits; kernel peak and CPU time from wait4."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        t0, peak_tree, threads = time.perf_counter(), 0, 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss, n_threads = tree_rss(proc.pid)
            if rss > peak_tree:
                peak_tree, threads = rss, n_threads
            time.sleep(interval)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    cpu = usage.ru_utime + usage.ru_stime  # the dvc process and every descendant it waited for
    return {"peak_tree_mb": round(peak_tree / MB, 1), "peak_process_mb": round(usage.ru_maxrss * 1024 / MB, 1),
            "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "cores": round(cpu / max(wall, 1e-9), 2),
            "threads": threads, "rc": proc.returncode}


# --------------------------------------------------------------------------- repository set-up
def pipeline_order(repo: Path) -> list[str]:
    """Every stage in the order `dvc repro` would run them (a forced dry run)."""
    out = subprocess.run(["dvc", "repro", "--dry", "-f"], cwd=repo, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"dvc repro --dry failed in {repo}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return re.findall(r"Running stage '([^']+)'", out.stdout)


def temp_copy(dest: Path) -> Path:
    """The checkout's files + dvc.lock + existing DVC outputs, params pointed at the real data."""
    repo = copy_repo(dest)
    for rel in OUTPUT_DIRS:
        if (ROOT / rel).is_dir():
            shutil.rmtree(repo / rel, ignore_errors=True)
            shutil.copytree(ROOT / rel, repo / rel, copy_function=_link_or_copy)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["raw_dir"]
    set_params(repo, {"data.raw_dir": str((ROOT / raw).resolve())})
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def _link_or_copy(src: str, dst: str) -> None:
    try:  # a stage replaces its outputs (atomic rename), never writes into them: a hard link is safe
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# --------------------------------------------------------------------------- main
def run_stages(repo: Path, stages: list[str], interval: float, logs: Path) -> list[dict]:
    order = pipeline_order(repo)
    unknown = [s for s in stages if s not in order and not any(o.startswith(f"{s}@") for o in order)]
    if unknown:
        sys.exit(f"unknown stage(s) {unknown}; known: {order}")
    # a group name (e.g. `cluster`) means all its items; keep pipeline order
    wanted = [o for o in order if not stages or o in stages or o.split("@")[0] in stages]
    rows = []
    for stage in wanted:
        print(f"  {stage} ...", end="", flush=True)
        r = {"stage": stage, **measure(["dvc", "repro", "-f", "--single-item", stage], repo, interval,
                                       logs / f"{stage.replace('@', '_')}.log")}
        print(f" {r['peak_tree_mb']:.0f} MB, {r['seconds']:.0f} s" + ("" if r["rc"] == 0 else f"  FAILED rc={r['rc']}"))
        rows.append(r)
    return rows


def print_table(rows: list[dict], budget_mb: float, n_jobs: int) -> None:
    head = f"{'stage':34} {'peak tree MB':>12} {'peak proc MB':>12} {'wall s':>8} {'cpu s':>8} {'cores':>6} {'threads':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        flag = "" if r["rc"] == 0 else "  FAILED (see log)"
        flag += "  > n_jobs" if r["cores"] > n_jobs + 0.5 else ""
        print(f"{r['stage']:34} {r['peak_tree_mb']:12.0f} {r['peak_process_mb']:12.0f} {r['seconds']:8.1f} "
              f"{r['cpu_seconds']:8.1f} {r['cores']:6.2f} {r['threads']:7d}{flag}")
    if rows:
        top = max(rows, key=lambda r: max(r["peak_tree_mb"], r["peak_process_mb"]))
        peak = max(top["peak_tree_mb"], top["peak_process_mb"])
        verdict = "within" if peak <= budget_mb else "OVER"
        print(f"\nmax peak: {peak:.0f} MB ({top['stage']}) = {100 * peak / budget_mb:.1f} % of the "
              f"{budget_mb:.0f} MB budget: {verdict} budget. Total wall {sum(r['seconds'] for r in rows):.0f} s. "
              f"Stages run one at a time, so the pipeline's peak is the largest stage's.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stages", nargs="*", help="stage names or foreach groups (default: every stage)")
    ap.add_argument("--repo", type=Path, help="run in place in this checkout instead of a temporary copy")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between RSS samples")
    ap.add_argument("--budget-gb", type=float, default=8.0)
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    failed = True
    try:
        repo = args.repo.resolve() if args.repo else temp_copy(tmp / "repo")
        if not args.repo:  # runs in the copy go to a throw-away MLflow store
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        n_jobs = int(yaml.safe_load((repo / "params.yaml").read_text())["n_jobs"])
        logs = tmp / "logs"
        logs.mkdir()
        print(f"repo: {repo}  (sampler: {SAMPLER}, every {args.interval} s; n_jobs={n_jobs}; stage logs: {logs})")
        rows = run_stages(repo, args.stages, args.interval, logs)
        print()
        print_table(rows, args.budget_gb * 1024, n_jobs)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"budget_mb": args.budget_gb * 1024, "n_jobs": n_jobs, "rows": rows},
                                            indent=2) + "\n")
        failed = any(r["rc"] for r in rows)
    finally:
        if args.keep or failed:
            print(f"kept (logs, copy): {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
