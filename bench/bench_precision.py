"""float32 vs bfloat16: does the faster precision keep the study's numbers within their noise?

    python bench/bench_precision.py [--methods vgg16 efficientnet_lite0 efficientnet_lite2 bert mpnet]
                                    [--repo DIR] [--json bench/precision_real_data.json] [--allow-loaded]

Each method's features are made twice, float32 and bfloat16, by the pipeline's own stage process
(stages/text_features.py or stages/deep_features.py: its pinned numerics, params checks and registry entry)
in a temporary copy of the repository holding --repo's params.yaml and pipeline outputs (data/interim,
data/pretrained, weights: hard links; default --repo: this checkout), with only `<stage>.<method>.precision`
changed and `pretrained.allow_download` / `allow_random_init` off (random weights would make the comparison
moot: refused). Then, on each feature set:
  - agreement: per-product cosine between the two precisions (mean and minimum);
  - clustering: the cluster stage itself (stages/cluster.py <set>) -> its `ari` ± `ari_std` (the primary
    reduction, every seed of params.yaml `cluster`, the set's own perplexity);
  - classification: logistic regression, 5-fold stratified CV on the train+val rows only (the test split
    is never read), accuracy mean ± std (this bench's protocol, run with the stages' pinned numerics);
  - seconds to extract: the stage's timing file (`extract_seconds` when it has one, else `seconds`).
A metric is "within noise" when |bf16 - f32| <= max(std_f32, std_bf16) (the seed / fold std). The
float32-vs-bfloat16 table of docs/benchmarks.md comes from this script; params.yaml's `precision` defaults follow it.
Needs --repo's pipeline inputs: data/interim/{catalog.parquet,text.parquet,images.npz} (`dvc repro
prep_images clean_text`) and the pretrained weights (`dvc repro pretrained`). Runs alone (bench/_bench.py).
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

_bench.stage_process()  # as in every stage process: the pinned numerics, before numpy loads

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from _repo import copy_on_outputs, set_params  # noqa: E402
from fkstudy import files, paths  # noqa: E402
from fkstudy.image.registry import IMAGE  # noqa: E402
from fkstudy.text.registry import TEXT  # noqa: E402

METHODS = ("vgg16", "efficientnet_lite0", "efficientnet_lite2", "bert", "mpnet")
PRECISIONS = ("float32", "bfloat16")
INPUTS = ("data/interim", "data/pretrained", "weights")


def stage_of(method: str) -> tuple[str, str]:
    """(stage, modality) that makes `method`'s features: text_features / text, deep_features / image."""
    stage, modality, entry = (("text_features", "text", TEXT[method]) if method in TEXT else
                              ("deep_features", "image", IMAGE.check(method, "deep")))
    if "precision" not in entry.params.model_fields:
        sys.exit(f"{method}: its params ({entry.params.__name__}) have no `precision`: nothing to compare")
    return stage, modality


def workspace(dest: Path, source: Path, methods: list[str]) -> Path:
    """A copy of the checkout on source's outputs whose pipeline lists hold every stage this bench runs."""
    ws = copy_on_outputs(dest, source, INPUTS)
    lists = yaml.safe_load((ws / "params.yaml").read_text())["pipeline"]
    text = [m for m in methods if m in TEXT]
    deep = [m for m in methods if m not in TEXT]
    sets = [f"{stage_of(m)[1]}_{m}" for m in methods]
    set_params(ws, {"pretrained.allow_download": False, "pretrained.allow_random_init": False,
                    "pipeline.text": list(dict.fromkeys(lists["text"] + text)),
                    "pipeline.deep": list(dict.fromkeys(lists["deep"] + deep)),
                    "pipeline.cluster": list(dict.fromkeys(lists["cluster"] + sets))})
    return ws


def run_stage(ws: Path, args: list[str], env: dict, log: Path) -> None:
    r = _bench.measure([sys.executable, f"stages/{args[0]}.py", *args[1:]], ws, env=env, log=log)
    if r["rc"]:
        raise RuntimeError(f"stages/{args[0]}.py {' '.join(args[1:])} failed ({r['rc']}); log {log}:\n"
                           f"{_bench.tail(log, 3000)}")


def one_precision(ws: Path, method: str, precision: str, env: dict, logs: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The method's features at one precision, made by its stage, and the cluster stage's figures on them."""
    stage, modality = stage_of(method)
    set_params(ws, {f"{stage}.{method}.precision": precision})
    run_stage(ws, [stage, method], env, logs / f"{method}_{precision}.log")
    X, ids, meta = files.load_features(ws / paths.features(modality, method))
    if meta.get("weights") not in ("pretrained", "imagenet"):
        raise RuntimeError(f"{method}: weights are {meta.get('weights')!r}, not pretrained: the comparison would be moot")
    timing = json.loads((ws / paths.timings(stage, method)).read_text())
    key = "extract_seconds" if "extract_seconds" in timing else "seconds"
    name = f"{modality}_{method}"
    run_stage(ws, ["cluster", name], env, logs / f"cluster_{name}_{precision}.log")
    c = json.loads((ws / paths.metrics("cluster", name)).read_text())
    return np.asarray(X, np.float32), np.asarray(ids), {"seconds": timing[key], "seconds_key": key, "ari": c["ari"],
                                                        "ari_std": c["ari_std"], "reduction": c["primary_reduction"],
                                                        "tsne_perplexity": c.get("tsne_perplexity")}


def cv_accuracy(X: np.ndarray, ids: np.ndarray, ws: Path, seed: int) -> dict:
    """Logistic regression, 5-fold stratified CV on the train+val rows only: accuracy mean ± std."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fkstudy.data.catalog import load_catalog

    catalog = load_catalog(ws / paths.CATALOG).set_index("id").loc[ids]
    seen = catalog["split"].isin(["train", "val"]).to_numpy()
    labels = catalog["category"].to_numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    acc = cross_val_score(clf, X[seen], labels[seen], cv=StratifiedKFold(5, shuffle=True, random_state=seed), n_jobs=1)
    return {"cv_accuracy": float(acc.mean()), "cv_accuracy_std": float(acc.std(ddof=1))}


def compare(ws: Path, method: str, env: dict, logs: Path) -> dict:
    seed = int(yaml.safe_load((ws / "params.yaml").read_text())["seed"])
    runs = {p: one_precision(ws, method, p, env, logs) for p in PRECISIONS}
    (Xf, ids, f), (Xb, ids_b, b) = runs["float32"], runs["bfloat16"]
    if not np.array_equal(ids, ids_b):
        raise RuntimeError(f"{method}: the two precisions' feature files list other ids")
    cos = (Xf * Xb).sum(1) / (np.linalg.norm(Xf, axis=1) * np.linalg.norm(Xb, axis=1) + 1e-12)
    row = {"method": method, "n": int(len(ids)), "dim": int(Xf.shape[1]), "cosine_mean": float(cos.mean()),
           "cosine_min": float(cos.min()), "seconds": {"float32": f.pop("seconds"), "bfloat16": b.pop("seconds")},
           "seconds_key": f.pop("seconds_key")}
    b.pop("seconds_key")
    for precision, X, figures in (("float32", Xf, f), ("bfloat16", Xb, b)):
        row[precision] = {**figures, **cv_accuracy(X, ids, ws, seed)}
    return {**row, "load_1m": _bench.load_1m()}


def within(row: dict, key: str) -> tuple[float, bool]:
    f, b = row["float32"], row["bfloat16"]
    delta = b[key] - f[key]
    return delta, abs(delta) <= max(f[f"{key}_std"], b[f"{key}_std"])


def table(rows: list[dict]) -> str:
    lines = ["| method | f32 s | bf16 s | speed-up | cosine mean / min | ARI f32 | ARI bf16 | Δ ARI | "
             "CV acc f32 | CV acc bf16 | Δ acc | within noise | load |", "|" + "---|" * 13]
    for r in rows:
        f, b, s = r["float32"], r["bfloat16"], r["seconds"]
        (da, ok_a), (dc, ok_c) = within(r, "ari"), within(r, "cv_accuracy")
        lines.append(
            f"| {r['method']} | {s['float32']:.1f} | {s['bfloat16']:.1f} | {s['float32'] / s['bfloat16']:.1f}× | "
            f"{r['cosine_mean']:.4f} / {r['cosine_min']:.4f} | {f['ari']:.3f} ± {f['ari_std']:.3f} | "
            f"{b['ari']:.3f} ± {b['ari_std']:.3f} | {da:+.3f} | {f['cv_accuracy']:.3f} ± {f['cv_accuracy_std']:.3f} | "
            f"{b['cv_accuracy']:.3f} ± {b['cv_accuracy_std']:.3f} | {dc:+.3f} | {'yes' if ok_a and ok_c else 'NO'} | "
            f"{r['load_1m']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--repo", type=Path, default=_bench.ROOT, help="the repository whose pipeline outputs are used")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy and the stage logs")
    _bench.add_arguments(ap)
    a = ap.parse_args()
    bench = _bench.Bench("bench_precision", a.allow_loaded)
    for m in a.methods:
        stage_of(m)  # an unknown method or one without `precision`: stop before any work
    tmp = Path(tempfile.mkdtemp(prefix="bench-precision-"))
    logs = tmp / "logs"
    logs.mkdir()
    ws = workspace(tmp / "ws", a.repo.resolve(), a.methods)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    rows, failed = [], []
    try:
        for method in a.methods:
            try:
                rows.append(compare(ws, method, env, logs))
            except RuntimeError as exc:
                print(f"{method}: {exc}", file=sys.stderr)
                failed.append(method)
                continue
            print(json.dumps(rows[-1]), bench.note(), flush=True)
    finally:
        if a.keep or failed:
            print(f"kept (copy, logs): {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nCPU: {bench.cpu}; load average (1 min) {bench.load_before} at start, {_bench.load_1m()} now; "
          "load column: when the method's row was done\n")
    print(table(rows))
    if a.json:
        bench.write_json(a.json, {"rows": rows, "failed": failed})
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
