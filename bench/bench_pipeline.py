"""Benchmark: cold `dvc repro` of the pipeline and a no-op `dvc repro`, in a temporary copy.

Prints wall-clock seconds; not a test. Goals (issue 2): cold text half ≤ 300 s, no-op ≤ 5 s, and a
`cluster.*` change re-runs only the cluster stages and the report.

    python bench/bench_pipeline.py [--targets report] [--per-class N]   # N=0: the full real data
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from integration.conftest import copy_repo, make_subset, set_params  # noqa: E402


def timed(cmd, cwd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return dt, re.findall(r"Running stage '([^']+)'", proc.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", nargs="*", default=[])
    ap.add_argument("--per-class", type=int, default=0, help="0 = all 1050 real products")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = copy_repo(tmp / "repo")
        (repo / "dvc.lock").unlink(missing_ok=True)
        if args.per_class:
            set_params(repo, {"data.raw_dir": str(make_subset(tmp / "data", args.per_class)),
                              "data.min_per_class": 5})
        else:
            set_params(repo, {"data.raw_dir": str((ROOT / "data/raw/flipkart").resolve())})
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
            subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
        env_note = f"MLflow store: {tmp}/mlflow.db"
        import os

        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        cold, stages = timed(["dvc", "repro", *args.targets], repo)
        print(f"cold dvc repro: {cold:.1f} s, {len(stages)} stages ({env_note})")
        noop, stages2 = timed(["dvc", "repro", *args.targets], repo)
        print(f"no-op dvc repro: {noop:.2f} s, {len(stages2)} stages run")
        set_params(repo, {"cluster.kmeans_n_init": 11})
        dt, stages3 = timed(["dvc", "repro", *args.targets], repo)
        print(f"after cluster.kmeans_n_init change: {dt:.1f} s, re-ran: {sorted(stages3)}")
        upstream = [s for s in stages3 if not s.startswith(("cluster@", "report"))]
        print("only cluster stages + report re-ran:", "yes" if not upstream else f"NO: {upstream}")


if __name__ == "__main__":
    main()
