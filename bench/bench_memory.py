"""Benchmark: peak memory, wall and CPU time of each DVC stage, against the 8 GB budget (issue 6).

Each stage runs as `dvc repro -f --single-item <stage>`, one after the other in pipeline order. While it
runs, the resident memory of its whole process tree (dvc + the stage's python) is sampled every
`--interval` seconds (bench/_bench.measure); when it ends, the kernel's high-water mark of the largest
single process in the tree (wait4's ru_maxrss, exact, not sampled) and its CPU seconds are read too.
`cores` = CPU seconds / wall seconds: a stage honouring `n_jobs` stays at or below n_jobs (plus a little
for dvc itself).

    python bench/bench_memory.py                         # every stage, real data, in a temporary copy
    python bench/bench_memory.py ingest prep_images      # only these stages (their inputs must exist)
    python bench/bench_memory.py --repo . cluster@text_bow   # in place, in this checkout
    python bench/bench_memory.py --source /tmp/study clean_text   # a copy on another repository's outputs

The temporary copy holds the checkout's files (as tests/integration does), dvc.lock, and a copy of the
DVC outputs already in the workspace (data/interim, data/features, data/pretrained, weights, models: hard
links where possible), so a single stage runs without its upstream; params point at the real data. Not a
test. Refuses to start on a loaded machine (bench/_bench.py; `--allow-loaded` overrides, recorded in the JSON).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

import _bench
from _repo import ROOT, copy_on_outputs

# --------------------------------------------------------------------------- main
def print_table(rows: list[dict], budget_mb: float, n_jobs: int, bench: _bench.Bench) -> None:
    print(f"CPU: {bench.cpu}; load = the 1-min load average when the stage ended")
    head = (f"{'stage':34} {'peak tree MB':>12} {'peak proc MB':>12} {'wall s':>8} {'cpu s':>8} {'cores':>6} "
            f"{'threads':>7} {'load':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        flag = "" if r["rc"] == 0 else "  FAILED (see log)"
        flag += "  > n_jobs" if r["cores"] > n_jobs + 0.5 else ""
        print(f"{r['stage']:34} {r['peak_tree_mb']:12.0f} {r['peak_process_mb']:12.0f} {r['seconds']:8.1f} "
              f"{r['cpu_seconds']:8.1f} {r['cores']:6.2f} {r['threads']:7d} {r['load_1m']:5.2f}{flag}")
    if rows:
        top = max(rows, key=lambda r: max(r["peak_tree_mb"], r["peak_process_mb"]))
        peak = max(top["peak_tree_mb"], top["peak_process_mb"])
        verdict = "within" if peak <= budget_mb else "OVER"
        print(f"\nmax peak: {peak:.0f} MB ({top['stage']}) = {100 * peak / budget_mb:.1f} % of the "
              f"{budget_mb:.0f} MB budget: {verdict} budget. Total wall {sum(r['seconds'] for r in rows):.0f} s. "
              f"Stages run one at a time, so the pipeline's peak is the largest stage's.  {bench.note()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stages", nargs="*", help="stage names or foreach groups (default: every stage)")
    ap.add_argument("--repo", type=Path, help="run in place in this checkout instead of a temporary copy")
    ap.add_argument("--source", type=Path, default=ROOT,
                    help="the repository whose params and outputs the temporary copy takes (default: this checkout)")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between RSS samples")
    ap.add_argument("--budget-gb", type=float, default=8.0)
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    _bench.add_arguments(ap)
    args = ap.parse_args()
    bench = _bench.Bench("bench_memory", args.allow_loaded)

    tmp = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    failed = True
    try:
        repo = args.repo.resolve() if args.repo else copy_on_outputs(tmp / "repo", args.source.resolve())
        if not args.repo:  # runs in the copy go to a throw-away MLflow store
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        n_jobs = int(yaml.safe_load((repo / "params.yaml").read_text())["n_jobs"])
        logs = tmp / "logs"
        logs.mkdir()
        print(f"repo: {repo}  (psutil sampler, every {args.interval} s; n_jobs={n_jobs}; stage logs: {logs})")
        rows = _bench.run_stages(repo, args.stages, logs, bench, args.interval)
        print()
        print_table(rows, args.budget_gb * 1024, n_jobs, bench)
        if args.json:
            bench.write_json(args.json, {"budget_mb": args.budget_gb * 1024, "n_jobs": n_jobs, "rows": rows})
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
