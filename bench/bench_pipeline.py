"""Benchmark: a cold `dvc repro` of the whole pipeline on the real data, per stage, then a no-op `dvc repro`.

Prints figures (not a test). Runs in a temporary copy of the repository with a fresh DVC cache and
`--force`, so every stage runs. For each stage: its wall time (from DVC's output), its start-up (process
start to `start_stage`: interpreter, imports, params validation — from reports/timings), its work (the rest
of the stage process) and DVC's own share (hashing, lock updates, between processes). Totals: the cold
repro, the sum of stage work, the start-up overhead; with and without the fine-tuning stages (`finetune@`).

    python bench/bench_pipeline.py [--targets report_screenshot] [--per-class N] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
from integration.conftest import copy_repo, make_subset, set_params  # noqa: E402

FINE_TUNING = ("finetune@",)


def run_timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, list[tuple[str, float]]]:
    """Run `cmd`, streaming its output; (total seconds, [(stage, wall seconds)] in run order)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stages, current, started = [], None, t0
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line])[-60:]
        m = re.match(r"Running stage '([^']+)'", line)
        if m:
            now = time.perf_counter()
            if current:
                stages.append((current, now - started))
            current, started = m.group(1), now
    proc.wait()
    end = time.perf_counter()
    if current:
        stages.append((current, end - started))
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(tail)}")
    return end - t0, stages


def timing_files(repo: Path) -> dict[str, dict]:
    """Each stage's reports/timings record, keyed by stage name (cluster/text_bow.json -> cluster@text_bow)."""
    out = {}
    for path in (repo / "reports" / "timings").rglob("*.json"):
        rel = path.relative_to(repo / "reports" / "timings").with_suffix("").as_posix()
        out[rel.replace("/", "@", 1)] = json.loads(path.read_text())
    return out


def stage_timing(timings: dict, stage: str) -> dict:
    name, _, item = stage.partition("@")
    if stage in timings:
        return timings[stage]
    if name == "train":  # train@vgg16-base writes train/vgg16_base.json
        return timings.get(f"train@{item.replace('-', '_')}", {})
    return timings.get(name, {}) if not item else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="*", default=[])
    ap.add_argument("--per-class", type=int, default=0, help="0 = all 1050 real products")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fkstudy-bench-") as tmp:
        tmp = Path(tmp)
        repo = copy_repo(tmp / "repo")
        raw = make_subset(tmp / "data", args.per_class) if args.per_class else (ROOT / "data/raw/flipkart").resolve()
        set_params(repo, {"data.raw_dir": str(raw), **({"data.min_per_class": 5} if args.per_class else {})})
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"],
                    ["dvc", "cache", "dir", "--local", str(tmp / "cache")]):
            subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
        load = os.getloadavg()[0]
        cold, stages = run_timed(["dvc", "repro", "--force", *args.targets], repo, env)
        noop, again = run_timed(["dvc", "repro", *args.targets], repo, env)
        timings = timing_files(repo)

    rows = []
    for stage, wall in stages:
        t = stage_timing(timings, stage)
        startup = t.get("startup_seconds")
        rows.append({"stage": stage, "wall": wall, "startup": startup})
    print(f"cold `dvc repro --force` ({len(stages)} stages, real data, load average {load:.1f} at start): {cold:.0f} s")
    print(f"{'stage':<38} {'wall s':>8} {'start-up s':>11}")
    for r in sorted(rows, key=lambda r: -r["wall"]):
        start = "" if r["startup"] is None else f"{r['startup']:.1f}"
        print(f"{r['stage']:<38} {r['wall']:>8.1f} {start:>11}")
    known = [r for r in rows if r["startup"] is not None]
    startup = sum(r["startup"] for r in known)
    fine = sum(r["wall"] for r in rows if r["stage"].startswith(FINE_TUNING))
    summary = {"cold_seconds": round(cold, 1), "stages": len(stages), "sum_stage_wall_seconds": round(sum(r["wall"] for r in rows), 1),
               "startup_seconds": round(startup, 1),
               "stage_work_seconds": round(sum(r["wall"] for r in known) - startup, 1),
               "fine_tuning_seconds": round(fine, 1), "cold_without_fine_tuning_seconds": round(cold - fine, 1),
               "noop_seconds": round(noop, 2), "noop_stages_run": len(again), "load_average": round(load, 1)}
    print(f"\nsum of stage wall times {summary['sum_stage_wall_seconds']} s = stage work {summary['stage_work_seconds']} s"
          f" + start-up (interpreter, imports, params) {summary['startup_seconds']} s + DVC's own share; "
          f"fine-tuning stages {summary['fine_tuning_seconds']} s (cold without them: "
          f"{summary['cold_without_fine_tuning_seconds']} s)")
    print(f"no-op `dvc repro`: {noop:.2f} s, {len(again)} stages run")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "stages": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
