"""Benchmark (issue 19): a no-op `dvc repro` in this checkout — what every user pays before each command, and
every CI step that asks DVC anything (target <= 3 s).

Prints figures (not a test). The checkout must be up to date (`dvc status` clean; it refuses otherwise, since a
stage would run). `dvc status` and `dvc repro` run --runs times each (median reported) and every run must run no
stage. The cold bench (bench_pipeline.py) measures the same no-op once after a cold run, in its temporary copy;
this one is for a change that touches only DVC's own cost (its YAML parser, the size of dvc.yaml/dvc.lock) and
needs no 40-minute cold run to be measured.

    python bench/bench_noop.py                  # -> bench/noop_repro.json
    python bench/bench_noop.py --runs 9 --json /tmp/noop.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _bench
from _repo import ROOT

OUT = ROOT / "bench" / "noop_repro.json"
TARGET_S = 3.0


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench_noop: {' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return seconds, proc.stdout


def yaml_parser() -> str:
    """Which parser DVC's YAML loads run on: ruamel.yaml's C one (ruamel.yaml.clib) or its pure-Python one."""
    from ruamel.yaml import main

    return "C (ruamel.yaml.clib)" if main.CParser is not None else "pure Python"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=OUT)
    _bench.add_arguments(ap)
    args = ap.parse_args()
    bench = _bench.Bench("bench_noop", args.allow_loaded)
    _, status = timed(["dvc", "status", "--json"])
    if json.loads(status or "{}"):
        sys.exit("bench_noop: `dvc status` is not clean here (a stage would run): `dvc repro` first")
    figures = {}
    for name, cmd in (("status", ["dvc", "status"]), ("repro", ["dvc", "repro"])):
        runs = []
        for _ in range(args.runs):
            seconds, out = timed(cmd)
            if "Running stage" in out:
                sys.exit(f"bench_noop: `{' '.join(cmd)}` ran a stage: not a no-op\n{out[-1000:]}")
            runs.append(round(seconds, 2))
        figures[name] = {"median_seconds": statistics.median(runs), "runs": runs}
        print(f"no-op `{' '.join(cmd)}`: median {statistics.median(runs):.2f} s of {runs}  {bench.note()}", flush=True)
    size = {f: (ROOT / f).stat().st_size for f in ("dvc.yaml", "dvc.lock", "params.yaml")}
    stages = len(timed(["dvc", "stage", "list", "--name-only"])[1].split())
    doc = {"noop_repro_seconds": figures["repro"]["median_seconds"], "target_seconds": TARGET_S,
           "within_target": figures["repro"]["median_seconds"] <= TARGET_S, "commands": figures,
           "yaml_parser": yaml_parser(), "file_bytes": size, "stages": stages}
    print(f"target <= {TARGET_S:g} s: {'met' if doc['within_target'] else 'NOT met'}; DVC's YAML parser: "
          f"{doc['yaml_parser']}")
    bench.write_json(args.json, doc)


if __name__ == "__main__":
    main()
