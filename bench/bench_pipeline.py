"""Benchmark (issue 19): a cold `dvc repro --force` of the pipeline, per stage, then a no-op `dvc repro`.

Prints figures (not a test). Runs in a temporary copy of the repository (the checkout's files; no DVC
output, no dvc.lock, no metrics/plots/reports), with a new EMPTY DVC cache (`dvc cache dir --local`; no run
cache to restore from), on the real data, so every stage runs from scratch, `pretrained` included.

1. `dvc repro --force` of the default pipeline: every stage except the optional ones -> wall_seconds.
2. The optional stages -> wall_seconds_all = both runs: with `--all`, every registered representation is added to
   the `pipeline` lists (the download-only ones params.yaml leaves out: CLIP, EfficientNetB0, MobileNetV3Small,
   random-init here) and `dvc repro` runs the stages that adds; stages whose name starts with an `--optional`
   prefix (e.g. `fine_tune@`; none by default) run with `dvc repro --force --single-item`.
3. `dvc repro` again: the no-op time (target <= 3 s; no stage may run).

After the default run its dvc.lock is compared with the checkout's, stage by stage (`lock_vs_checkout`): a cold
run in another directory with another cache gives the same lock entries when results reproduce (issue 18).

Per stage: its wall time (from DVC's output: one "Running stage" line to the next, so DVC's hashing and lock
writing after a stage count in it), and from the stage's own timing file (reports/timings/<stage>[/<key>].json,
matched by the time it was written): `startup_seconds` (process start to start_stage: interpreter, imports,
params) and its work (the file's `seconds`, else the sum of its other `*_seconds` steps, a step that ends
with another's name counted as part of it: head_fit_seconds in fit_seconds). The rest is DVC's share and
whatever the stage did not time. Peak memory: the single sampler of bench/_bench.py over each whole run: the
largest sum over the process tree (and the stage running then), and wait4's high-water mark of the largest
single process (target <= 8 GB).

    python bench/bench_pipeline.py                               # real data -> bench/cold_pipeline.json
    python bench/bench_pipeline.py --all                         # + every registered representation (issue 19)
    python bench/bench_pipeline.py --optional fine_tune@ zero_shot   # timed apart (wall_seconds without them)
    python bench/bench_pipeline.py --per-class 5 --targets ingest clean_text --allow-loaded --json /tmp/c.json

`--per-class N` runs on N real products per class (the integration fixture's params, tests' SMALL_PARAMS):
a code-path check, never a figure. Refuses a loaded machine (bench/_bench.py; `--allow-loaded` overrides and
the JSON records "loaded": true). The JSON is written to bench/cold_pipeline.json only by a full run on the
real data (no --per-class, no --targets); otherwise only where --json says.
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

import _bench
from _repo import ROOT, SMALL_PARAMS, copy_repo, git_commit_all, make_subset, pipeline_order, real_data_dir, set_params

OUT = ROOT / "bench" / "cold_pipeline.json"
BUDGET_MB = 8 * 1024
NOOP_TARGET_S = 3.0
RUNNING = re.compile(r"Running stage '([^']+)'")


def cold_copy(tmp: Path, per_class: int) -> Path:
    """A git repository copy of the checkout with no pipeline output, an empty DVC cache, params on the data."""
    repo = copy_repo(tmp / "repo")
    for out in ("metrics", "plots", "reports"):  # every output must come from this run
        shutil.rmtree(repo / out, ignore_errors=True)
    (repo / "dvc.lock").unlink(missing_ok=True)
    if per_class:
        if per_class < SMALL_PARAMS["data.min_per_class"]:
            sys.exit(f"--per-class {per_class}: at least {SMALL_PARAMS['data.min_per_class']} "
                     "(the subset params' data.min_per_class)")
        set_params(repo, {**SMALL_PARAMS, "data.raw_dir": str(make_subset(tmp / "data", per_class))})
    else:  # linked where params.yaml expects it (as scripts/setup.sh does): the params, so dvc.lock, stay the checkout's
        (repo / "data" / "raw").mkdir(parents=True, exist_ok=True)
        (repo / "data" / "raw" / "flipkart").symlink_to(real_data_dir())
    git_commit_all(repo)
    (tmp / "cache").mkdir()
    subprocess.run(["dvc", "cache", "dir", "--local", str(tmp / "cache")], cwd=repo, check=True, capture_output=True)
    return repo


class StageClock:
    """Reads DVC's output as it comes: when each stage started (wall clock) and the load average then."""

    def __init__(self):
        self.starts: list[tuple[str, float, float]] = []

    def __call__(self, line: str, _since_start: float) -> None:
        m = RUNNING.search(line)
        if m:
            self.starts.append((m.group(1), time.time(), _bench.load_1m()))


def repro(cmd: list[str], repo: Path, env: dict, log: Path, label: str) -> tuple[dict, list[dict]]:
    """Run one `dvc repro ...` under the sampler: (its figures, one row per stage it ran)."""
    clock = StageClock()
    t0 = time.time()
    r = _bench.measure(cmd, repo, env=env, log=log, interval=0.5, on_line=clock)
    if r["rc"]:
        sys.exit(f"{label}: `{' '.join(cmd)}` failed ({r['rc']}); log {log}:\n{_bench.tail(log)}")
    end = t0 + r["seconds"]
    rows = []
    for i, (stage, start, load) in enumerate(clock.starts):
        stop = clock.starts[i + 1][1] if i + 1 < len(clock.starts) else end
        rows.append({"stage": stage, "run": label, "start": start, "stop": stop, "wall_seconds": round(stop - start, 2),
                     "load_1m_at_start": load})
    peak_time = t0 + r["peak_tree_at_s"]
    r["peak_tree_stage"] = next((row["stage"] for row in rows if row["start"] <= peak_time < row["stop"]), None)
    return r, rows


def lock_vs_checkout(repo: Path) -> dict:
    """The cold run's dvc.lock against the checkout's (issue 18: a run on another machine with the same code, params
    and data must leave `git status` clean): per stage the cold run wrote, is its entry (cmd, deps, params, outs and
    their hashes) the checkout's? Only meaningful when the checkout's lock is up to date with its code."""
    import yaml

    mine = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    theirs = (yaml.safe_load((ROOT / "dvc.lock").read_text()) or {}).get("stages", {}) \
        if (ROOT / "dvc.lock").exists() else {}
    differ = {}
    for stage, entry in mine.items():
        other = theirs.get(stage)
        if other != entry:
            differ[stage] = "not in the checkout's lock" if other is None else \
                sorted(k for k in {*entry, *other} if entry.get(k) != other.get(k))
    return {"stages": len(mine), "identical": len(mine) - len(differ), "differ": differ}


def work_seconds(timing: dict, wall: float | None = None) -> float | None:
    """The stage's timed work: its `seconds`, else the sum of its `*_seconds` steps (startup and per-unit
    rates excluded; a step named like the end of another, head_fit_seconds vs fit_seconds, is part of it). A sum
    above the stage's `wall` means the steps nest (fine_tune's fit_seconds holds its views / frozen part / tune
    steps): the largest step is the work then."""
    if isinstance(timing.get("seconds"), (int, float)):
        return float(timing["seconds"])
    steps = [k for k, v in timing.items() if k.endswith("_seconds") and k != "startup_seconds"
             and isinstance(v, (int, float))]
    steps = [k for k in steps if not any(k != o and k.endswith("_" + o) for o in steps)]
    if not steps:
        return None
    work = round(sum(timing[k] for k in steps), 3)
    return max(timing[k] for k in steps) if wall is not None and work > wall else work


def attach_timings(repo: Path, rows: list[dict]) -> None:
    """Each stage's timing file is the one written while it ran (the stage name maps to its path loosely:
    train@vgg16-base writes train/vgg16_base.json, fine_tune@vgg16 train/vgg16_finetuned.json)."""
    base = repo / "reports" / "timings"
    files = [(p.stat().st_mtime, p) for p in base.rglob("*.json")] if base.is_dir() else []
    for row in rows:
        mine = [p for t, p in files if row["start"] <= t < row["stop"]]
        named = [p for p in mine if p.relative_to(base).with_suffix("").as_posix().replace("/", "@", 1) == row["stage"]]
        path = (named or mine or [None])[0]
        timing = json.loads(path.read_text()) if path else {}
        startup, work = timing.get("startup_seconds"), work_seconds(timing, row["wall_seconds"])
        row.update(timing_file=path.relative_to(repo).as_posix() if path else None, startup_seconds=startup,
                   work_seconds=work, steps={k: v for k, v in timing.items() if k.endswith("seconds") and k != "startup_seconds"},
                   other_seconds=round(row["wall_seconds"] - (startup or 0) - (work or 0), 2) if path else None)


def total(rows: list[dict], key: str) -> float:
    return round(sum(r[key] for r in rows if r.get(key) is not None), 1)


def print_rows(rows: list[dict], bench: _bench.Bench) -> None:
    print(f"\nper stage (CPU: {bench.cpu}; load = 1-min load average when the stage started), slowest first:")
    print(f"{'stage':<36} {'run':<8} {'wall s':>8} {'start-up s':>10} {'work s':>8} {'other s':>8} {'load':>5}")
    fmt = lambda v: "" if v is None else f"{v:.1f}"  # noqa: E731
    for r in sorted(rows, key=lambda r: -r["wall_seconds"]):
        print(f"{r['stage']:<36} {r['run']:<8} {r['wall_seconds']:>8.1f} {fmt(r['startup_seconds']):>10} "
              f"{fmt(r['work_seconds']):>8} {fmt(r['other_seconds']):>8} {r['load_1m_at_start']:>5.2f}")


def every_method_lists(repo: Path) -> dict:
    """`pipeline` lists naming every registered representation, default order first. The registries are read from
    the installed package (this checkout's files, which the copy holds): putting the copy's src/ first on sys.path
    made `fkstudy` the copy's package, gone with the copy when the JSON was written (an ImportError at the end of a
    35-min run)."""
    import yaml

    from fkstudy.image.registry import IMAGE, backbones

    lists = yaml.safe_load((repo / "params.yaml").read_text())["pipeline"]
    extra_deep = [n for n in IMAGE.names("deep") if n not in lists["deep"]]
    extra_backbones = [b for b in backbones() if b not in lists["backbones"]]
    return {"pipeline.deep": lists["deep"] + extra_deep,
            "pipeline.backbones": lists["backbones"] + extra_backbones,
            "pipeline.cluster": lists["cluster"] + [f"image_{n}" for n in extra_deep if f"image_{n}" not in lists["cluster"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="*", default=[], help="only these stages and their upstream (default: all)")
    ap.add_argument("--optional", nargs="*", default=[], metavar="PREFIX",
                    help="stages whose name starts with one of these are optional: run after the default pipeline")
    ap.add_argument("--all", action="store_true",
                    help="then add every registered representation to the pipeline lists and time what that adds")
    ap.add_argument("--per-class", type=int, default=0, help="N real products per class (0 = all 1050)")
    ap.add_argument("--json", type=Path, help=f"write the figures here (default {OUT.relative_to(ROOT)} for a full "
                                              "real-data run, else nowhere)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    _bench.add_arguments(ap)
    args = ap.parse_args()
    bench = _bench.Bench("bench_pipeline", args.allow_loaded)
    out = args.json or (OUT if not args.per_class and not args.targets else None)

    tmp = Path(tempfile.mkdtemp(prefix="fkstudy-bench-pipeline-"))
    try:
        repo = cold_copy(tmp, args.per_class)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "PYTHONUNBUFFERED": "1"}
        order = pipeline_order(repo, args.targets)
        optional = [s for s in order if s.startswith(tuple(args.optional))] if args.optional else []
        default = [s for s in order if s not in optional]
        print(f"cold copy {tmp}: {len(default)} default + {len(optional)} optional stages, empty DVC cache, "
              f"{'%d per class' % args.per_class if args.per_class else 'real data'}", flush=True)
        first, rows = repro(["dvc", "repro", "--force", *(default if optional else args.targets)], repo, env,
                            tmp / "repro_default.log", "default")
        print(f"cold `dvc repro --force` (default pipeline, {len(rows)} stages): {first['seconds']:.0f} s  "
              f"{bench.note()}", flush=True)
        runs = {"default": first}
        lock = lock_vs_checkout(repo) if not args.per_class and not args.targets else None
        if lock is not None:
            print(f"dvc.lock of the cold run vs the checkout's: {lock['identical']} of {lock['stages']} stage entries "
                  f"identical{'' if not lock['differ'] else '; differ: ' + json.dumps(lock['differ'])}", flush=True)
        left = [s for s in optional if s not in {r["stage"] for r in rows}]  # a default stage may pull one in
        if left:
            runs["optional"], more = repro(["dvc", "repro", "--force", "--single-item", *left], repo, env,
                                           tmp / "repro_optional.log", "optional")
            rows += more
            print(f"optional stages ({len(more)}): {runs['optional']['seconds']:.0f} s  {bench.note()}", flush=True)
        if args.all:
            before = {r["stage"] for r in rows}
            set_params(repo, every_method_lists(repo))
            runs["all"], more = repro(["dvc", "repro", *args.targets], repo, env, tmp / "repro_all.log", "all")
            rows += more
            optional += [r["stage"] for r in more if r["stage"] not in before]
            print(f"every registered representation ({len(more)} more stages): {runs['all']['seconds']:.0f} s  "
                  f"{bench.note()}", flush=True)
        noop, again = repro(["dvc", "repro", *args.targets], repo, env, tmp / "repro_noop.log", "no-op")
        attach_timings(repo, rows)
    except BaseException:
        print(f"kept (logs, copy): {tmp}", file=sys.stderr)
        raise
    if args.keep:
        print(f"kept (logs, copy): {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)

    for r in rows:
        r["optional"] = r["stage"] in optional
        del r["start"], r["stop"]
    wall_all = round(sum(r["seconds"] for r in runs.values()), 1)
    peak = max(runs.values(), key=lambda r: r["peak_tree_mb"])
    summary = {
        "wall_seconds": round(first["seconds"], 1), "wall_seconds_all": wall_all,
        "optional_prefixes": args.optional, "every_registered": args.all, "optional_stages": optional,
        "stages": len(rows),
        "sum_stage_wall_seconds": total(rows, "wall_seconds"), "sum_startup_seconds": total(rows, "startup_seconds"),
        "sum_work_seconds": total(rows, "work_seconds"), "sum_other_seconds": total(rows, "other_seconds"),
        "noop_seconds": round(noop["seconds"], 2), "noop_stages_run": len(again), "noop_target_seconds": NOOP_TARGET_S,
        "peak_memory": {"tree_mb": peak["peak_tree_mb"], "tree_stage": peak["peak_tree_stage"],
                        "process_mb": max(r["peak_process_mb"] for r in runs.values()), "budget_mb": BUDGET_MB},
        "per_class": args.per_class, "targets": args.targets, "data": "subset" if args.per_class else "real",
        "lock_vs_checkout": lock,
    }
    print_rows(rows, bench)
    pm = summary["peak_memory"]
    print(f"\ncold `dvc repro --force`: default pipeline {summary['wall_seconds']:.0f} s, with the optional stages "
          f"{wall_all:.0f} s  {bench.note()}")
    print(f"sum of stage wall {summary['sum_stage_wall_seconds']} s = start-up {summary['sum_startup_seconds']} s + "
          f"work {summary['sum_work_seconds']} s + DVC and untimed {summary['sum_other_seconds']} s "
          f"(stages without a timing file count in none of the three)")
    print(f"peak memory: process tree {pm['tree_mb']:.0f} MB ({pm['tree_stage']}), largest process "
          f"{pm['process_mb']:.0f} MB; budget {BUDGET_MB} MB: {'within' if max(pm['tree_mb'], pm['process_mb']) <= BUDGET_MB else 'OVER'}"
          f"  {bench.note()}")
    print(f"no-op `dvc repro`: {noop['seconds']:.2f} s (target <= {NOOP_TARGET_S:g} s), {len(again)} stages run  "
          f"{bench.note()}")
    if out:
        bench.write_json(out, {**summary, "runs": runs, "rows": rows})


if __name__ == "__main__":
    main()
