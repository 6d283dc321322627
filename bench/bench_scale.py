"""Benchmark: the text stages at 1×, 5× and 20× the catalog — seconds and peak memory per stage.

Each scale gets a synthetic catalog made from the real one: 1× is the real CSV; at s× every real
product also appears s-1 more times, perturbed (words of the name dropped/swapped; half of the
descriptions swapped with another product of the same category, then words dropped/swapped), each
copy with a new unique id and its own image name (a symlink to the original photo: ingest still
decodes every one). Categories, missing photos and the other columns are kept.

For each scale a temporary git+DVC copy of the repository runs, one `dvc repro --single-item` at a
time: ingest → clean_text → text_features@<each method> → cluster@text_<set> → text_classifier@<set>.
The methods default to params.yaml `pipeline.text` (each an entry of fkstudy.text.registry.TEXT).
Per stage it prints the rows, wall-clock seconds of the whole `dvc` command (DVC's hashing
included), the peak RSS of the stage's process tree (sampled every 0.2 s, summed over dvc and its
children) and of its largest process (exact, from wait4), and the growth exponent b in
time ∝ rows^b between consecutive scales (1 = linear; fixed start-up costs pull it below 1).
Not a test. Goal (issue 5): near-linear growth, 20× in ≤ 5 min. Runs alone (bench/_bench.py:
refuses a loaded machine unless --allow-loaded, recorded in the JSON).

    python bench/bench_scale.py [--scales 1 5 20] [--methods bow tfidf ...] [--cluster-set tfidf]
                                [--classifier-set tfidf] [--budget-min 30] [--json out.json]
    python bench/bench_scale.py --per-class 10 --scales 1 2 --methods tfidf --allow-loaded   # a code-path check

Before the measured stages, `pretrained` runs once per copy (not measured): every text_features stage
depends on its weights record.

A scale whose linear extrapolation from the previous one exceeds --budget-min is skipped (and said so).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import _bench
from _repo import CSV, ROOT, copy_repo, git_commit_all, make_subset, real_data_dir, set_params
from fkstudy.text.registry import TEXT  # on sys.path through _bench

# the text methods the pipeline runs (params.yaml `pipeline.text`), every one a text registry entry
METHODS = [TEXT[m].name for m in yaml.safe_load((ROOT / "params.yaml").read_text())["pipeline"]["text"]]


# ---------------------------------------------------------------- synthetic catalog
def _perturb(words: list[str], rng: np.random.Generator, drop: float, swaps: int) -> list[str]:
    kept = [w for w in words if rng.random() >= drop] or words[:1]
    for _ in range(swaps if len(kept) > 1 else 0):
        i = int(rng.integers(len(kept) - 1))
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return kept


def synth_catalog(dest: Path, scale: int, seed: int = 0, per_class: int = 0) -> tuple[Path, int]:
    """Write <dest>/<csv> + <dest>/Images (symlinks) for `scale` × the real catalog (or a per_class subset of
    it); returns (dir, rows)."""
    src = make_subset(dest.with_name("subset"), per_class) if per_class else real_data_dir()
    real = pd.read_csv(src / CSV, dtype=str, keep_default_na=False)
    category = real["product_category_tree"].str.extract(r'^\["([^>"]+)')[0].str.strip()
    by_class = {c: np.flatnonzero(category.to_numpy() == c) for c in category.unique()}
    frames = [real]
    for k in range(1, scale):
        rng = np.random.default_rng([seed, k])
        copy = real.copy()
        copy["uniq_id"] = real["uniq_id"] + f"-s{k:03d}"
        copy["image"] = [f"{i}.jpg" if name else "" for i, name in zip(copy["uniq_id"], real["image"])]
        names, descs = [], []
        for i, (name, cat) in enumerate(zip(real["product_name"], category)):
            names.append(" ".join(_perturb(name.split(), rng, 0.15, 1)))
            j = int(rng.choice(by_class[cat])) if rng.random() < 0.5 else i  # same-class description
            descs.append(" ".join(_perturb(real["description"].iat[j].split(), rng, 0.1, 3)))
        copy["product_name"], copy["description"] = names, descs
        frames.append(copy)
    df = pd.concat(frames, ignore_index=True)
    if df["uniq_id"].duplicated().any():
        raise RuntimeError("synthetic catalog: duplicated ids")
    images = dest / "Images"
    images.mkdir(parents=True)
    originals = pd.concat([real["image"]] * scale, ignore_index=True)
    for name, orig in zip(df["image"], originals):
        if name and (src / "Images" / orig).exists():  # a missing original photo stays missing
            os.symlink(src / "Images" / orig, images / name)
    df.to_csv(dest / CSV, index=False)
    return dest, len(df)


# ---------------------------------------------------------------- measured stage runs
def run_scale(scale: int, tmp: Path, args, bench: _bench.Bench) -> list[dict]:
    base = tmp / f"x{scale}"
    data, rows = synth_catalog(base / "data", scale, args.seed, args.per_class)
    repo = copy_repo(base / "repo")
    for out in ("metrics", "plots", "reports"):  # outputs must come from this run
        shutil.rmtree(repo / out, ignore_errors=True)
    (repo / "dvc.lock").unlink(missing_ok=True)
    if args.dvc_yaml:
        shutil.copy(args.dvc_yaml, repo / "dvc.yaml")
    set_params(repo, {"data.raw_dir": str(data), **({"data.min_per_class": 5} if args.per_class else {})})
    git_commit_all(repo)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}"}
    # set-up, not measured: the weights records every text_features stage depends on
    setup = _bench.measure(["dvc", "repro", "--single-item", "pretrained"], repo, env=env, log=base / "dvc.log")
    if setup["rc"]:
        sys.exit(f"dvc repro --single-item pretrained failed; log {base / 'dvc.log'}:\n{_bench.tail(base / 'dvc.log')}")
    stages = ["ingest", "clean_text", *[f"text_features@{m}" for m in args.methods],
              f"cluster@text_{args.cluster_set}", f"text_classifier@{args.classifier_set}"]
    results = []
    for stage in stages:
        r = _bench.measure(["nice", "-n", str(args.nice), "dvc", "repro", "--single-item", stage], repo, env=env,
                           log=base / "dvc.log")
        if r["rc"]:
            sys.exit(f"dvc repro --single-item {stage} failed ({r['rc']}); log {base / 'dvc.log'}:\n"
                     f"{_bench.tail(base / 'dvc.log')}")
        n = rows if stage == "ingest" else len(pd.read_parquet(repo / "data/interim/catalog.parquet", columns=["id"]))
        note = ""
        if stage.startswith("cluster@"):
            m = json.loads((repo / f"metrics/cluster/text_{args.cluster_set}.json").read_text())
            if "tsne" in m and m["tsne"].get("rows", n) < n:
                note = f"t-SNE/ARI on {m['tsne']['rows']} rows"
            if m.get("none", {}).get("silhouette_rows", n) < n:
                note += f"{'; ' if note else ''}silhouette on {m['none']['silhouette_rows']}"
        results.append({"scale": scale, "stage": stage, "rows": n, **r, "note": note, "load_1m": _bench.load_1m()})
        print(f"  {scale:>3}×  {stage:<28} {n:>7} rows  {r['seconds']:8.1f} s  "
              f"{r['peak_tree_mb']:7.0f} MB tree  {r['peak_process_mb']:7.0f} MB proc  {note}  {bench.note()}",
              flush=True)
    return results


def table(results: list[dict]) -> str:
    scales = sorted({r["scale"] for r in results})
    stages = list(dict.fromkeys(r["stage"] for r in results))
    get = {(r["scale"], r["stage"]): r for r in results}
    head = "| stage | " + " | ".join(f"{s}×: rows, s, peak MB" for s in scales)
    head += "".join(f" | b {a}→{b}×" for a, b in zip(scales, scales[1:])) + " |"
    lines = [head, "|" + "---|" * (1 + len(scales) + len(scales) - 1)]
    totals = {s: sum(get[(s, st)]["seconds"] for st in stages if (s, st) in get) for s in scales}
    for st in [*stages, "total"]:
        cells, exps = [], []
        for s in scales:
            r = get.get((s, st))
            if st == "total":
                cells.append(f"{totals[s]:.0f} s")
            else:
                cells.append(f"{r['rows']}, {r['seconds']:.1f}, {r['peak_tree_mb']:.0f}" if r else "–")
        for a, b in zip(scales, scales[1:]):
            ra, rb = get.get((a, st)), get.get((b, st))
            if st == "total":
                ta, tb, na, nb = totals[a], totals[b], a, b
            elif ra and rb:
                ta, tb, na, nb = ra["seconds"], rb["seconds"], ra["rows"], rb["rows"]
            else:
                exps.append("–")
                continue
            exps.append(f"{math.log(tb / ta) / math.log(nb / na):.2f}")
        lines.append(f"| {st} | " + " | ".join(cells + exps) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", type=int, nargs="*", default=[1, 5, 20])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--cluster-set", default="tfidf", choices=METHODS)
    ap.add_argument("--classifier-set", default="tfidf", choices=METHODS)
    ap.add_argument("--budget-min", type=float, default=30.0, help="skip a scale projected (linearly) to exceed this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=0,
                    help="scale N real products per class instead of the whole catalog (a code-path check)")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--dvc-yaml", type=Path, help="use this dvc.yaml instead of the working tree's")
    ap.add_argument("--merge", type=Path, nargs="*", default=[],
                    help="earlier --json files: their scales join the table (e.g. 20× run on its own)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies (path printed)")
    _bench.add_arguments(ap)
    args = ap.parse_args()
    bench = _bench.Bench("bench_scale", args.allow_loaded)
    for needed in {args.cluster_set, args.classifier_set} - set(args.methods):
        args.methods.append(needed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"bench_scale: {tmp}", flush=True)
    merged = [r for f in args.merge for r in _rows(f) if r["scale"] not in args.scales]
    fresh: list[dict] = []
    prev = None
    try:
        for scale in sorted(args.scales):
            if prev:
                projected = prev[1] * scale / prev[0] / 60
                if projected > args.budget_min:
                    print(f"  {scale}×: skipped — projected {projected:.0f} min from {prev[0]}× "
                          f"(> --budget-min {args.budget_min:g})", flush=True)
                    continue
            res = run_scale(scale, tmp, args, bench)
            fresh += res
            prev = (scale, sum(r["seconds"] for r in res))
            print(f"  {scale}×: total {prev[1]:.0f} s  {bench.note()}", flush=True)
            if args.json:
                bench.write_json(args.json, {"methods": args.methods, "rows": fresh})
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"CPU: {bench.cpu}; load average (1 min) {bench.load_before} at start, {_bench.load_1m()} now")
    print(table(merged + fresh))


def _rows(path: Path) -> list[dict]:
    doc = json.loads(path.read_text())
    return doc if isinstance(doc, list) else doc["rows"]  # a list: written before the machine facts were


if __name__ == "__main__":
    main()
