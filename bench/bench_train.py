"""Benchmark the supervised stages on the real data: wall time and peak memory of every `train` matrix entry
and `multiseed` stage, the head's fit time per run (goal: <= 60 s once backbone features are cached), and
augmentation precomputed once against augmentation on the fly.

    python bench/bench_train.py [--stages train multiseed] [--source DIR] [--skip-stages] [--json out.json]

The stages run one at a time, `dvc repro -f --single-item` under the shared sampler (bench/_bench.py), in a
temporary copy on the outputs of --source (default: this checkout, where `dvc repro augment` and the
feature stages must have run); the table reads what each run wrote: reports/timings/train/<b>_<v>.json
(fit_seconds, seconds_per_epoch) and metrics/train/<b>_<v>.json (epochs_run, test_accuracy). With
--skip-stages nothing runs: --source's own files are read (no wall time).

Precomputed (`augment@<b>`: `train.augment.views` views of every train photo through the frozen backbone,
once) against on the fly (the backbone re-run on freshly augmented photos every epoch): both from the
augment stage's own timing file, one view costing (augment_seconds + extract_seconds) / n_views, on the fly
= that x the train photos x the epochs the augmented head ran. Runs alone (bench/_bench.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import _bench
from _repo import ROOT, copy_on_outputs


def timing_key(stage: str) -> str:
    """The reports/timings/train/<key>.json a stage writes: train@vgg16-base -> vgg16_base,
    fine_tune@vgg16 -> vgg16_finetuned."""
    name, _, item = stage.partition("@")
    return f"{item}_finetuned" if name == "fine_tune" else item.replace("-", "_")


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def train_rows(repo: Path, walls: dict[str, dict]) -> list[dict]:
    rows = []
    for path in sorted((repo / "reports/timings/train").glob("*.json")):
        t, m = read(path), read(repo / "metrics/train" / path.name)
        w = walls.get(path.stem, {})
        rows.append({"run": path.stem, "wall_seconds": w.get("seconds"), "peak_tree_mb": w.get("peak_tree_mb"),
                     "fit_seconds": t.get("fit_seconds"), "epochs_run": m.get("epochs_run"),
                     "seconds_per_epoch": t.get("seconds_per_epoch"), "test_accuracy": m.get("test_accuracy"),
                     "load_1m": w.get("load_1m")})
    return rows


def augmentation_rows(repo: Path) -> list[dict]:
    rows = []
    for path in sorted((repo / "reports/timings/augment").glob("*.json")):
        t, m = read(path), read(repo / f"metrics/train/{path.stem}_augmented.json")
        if not t.get("n_views") or not m.get("n_train"):
            continue
        per_view = (t.get("augment_seconds", 0) + t["extract_seconds"]) / t["n_views"]
        epoch = per_view * m["n_train"]
        rows.append({"backbone": path.stem, "views_per_second": round(1 / per_view, 1), "n_views": t["n_views"],
                     "precomputed_seconds": round(per_view * t["n_views"], 1), "on_the_fly_seconds_per_epoch":
                     round(epoch, 1), "epochs_run": m.get("epochs_run"),
                     "on_the_fly_seconds": round(epoch * (m.get("epochs_run") or 0), 1)})
    return rows


def cell(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", default=["train", "multiseed"], help="stages or foreach/matrix groups")
    ap.add_argument("--source", type=Path, default=ROOT, help="the repository whose outputs are used")
    ap.add_argument("--skip-stages", action="store_true", help="run nothing: read --source's timings and metrics")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy and the stage logs")
    _bench.add_arguments(ap)
    a = ap.parse_args()
    bench = _bench.Bench("bench_train", a.allow_loaded)
    source, tmp = a.source.resolve(), Path(tempfile.mkdtemp(prefix="bench-train-"))
    stages: list[dict] = []
    try:
        repo = source
        if not a.skip_stages:
            repo = copy_on_outputs(tmp / "repo", source)
            (tmp / "logs").mkdir()
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
            stages = _bench.run_stages(repo, a.stages, tmp / "logs", bench, env=env)
        walls = {timing_key(r["stage"]): r for r in stages if r["stage"].startswith(("train@", "fine_tune@"))}
        train, augmentation = train_rows(repo, walls), augmentation_rows(source)  # augment is not re-run
    finally:
        failed = any(r["rc"] for r in stages)
        if a.keep or failed:
            print(f"kept (copy, logs): {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nCPU: {bench.cpu}; load = 1-min load average when the stage ended")
    print(f"{'run':<32}{'wall s':>9}{'peak MB':>9}{'head fit s':>12}{'epochs':>8}{'s/epoch':>9}{'test acc':>10}{'load':>6}")
    for r in train:
        print(f"{r['run']:<32}{cell(r['wall_seconds'], '.1f'):>9}{cell(r['peak_tree_mb'], '.0f'):>9}"
              f"{cell(r['fit_seconds'], '.1f'):>12}{cell(r['epochs_run'], 'd'):>8}{cell(r['seconds_per_epoch'], '.2f'):>9}"
              f"{cell(r['test_accuracy'], '.4f'):>10}{cell(r['load_1m'], '.2f'):>6}")
    for r in stages:
        if not r["stage"].startswith(("train@", "fine_tune@")):
            print(f"{r['stage']:<32}{r['seconds']:>9.1f}{r['peak_tree_mb']:>9.0f}{'':>39}{r['load_1m']:>6.2f}")
    if stages:
        print(f"total wall of the stages run: {sum(r['seconds'] for r in stages):.1f} s  {bench.note()}")
    print("\naugmentation: precomputed once (augment@<b>) vs on the fly (every epoch), from augment's timing files")
    print(f"{'backbone':<20}{'views/s':>9}{'precomputed s':>15}{'on-the-fly s/epoch':>20}{'x epochs run':>14}")
    for r in augmentation:
        print(f"{r['backbone']:<20}{r['views_per_second']:>9}{r['precomputed_seconds']:>15.0f}"
              f"{r['on_the_fly_seconds_per_epoch']:>20.0f}{r['on_the_fly_seconds']:>14.0f}")
    if a.json:
        bench.write_json(a.json, {"source": str(source), "ran_stages": not a.skip_stages, "stages": stages,
                                  "train": train, "augmentation": augmentation})
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
