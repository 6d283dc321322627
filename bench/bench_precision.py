"""float32 vs bfloat16: does the faster precision keep the study's numbers within their noise?

    python bench/bench_precision.py [--methods vgg16 efficientnet_lite0 efficientnet_lite2 bert mpnet]
                                    [--json bench/precision_real_data.json]

For each deep extractor (run through its registry entry, exactly as its stage runs it, with the params of
params.yaml and only `precision` changed) the features of every product are made twice, float32 and
bfloat16, each method in its own subprocess (TensorFlow and torch never share one). Then, on each feature
set:
  - agreement: per-product cosine between the two precisions (mean and minimum);
  - clustering: the cluster stage's own draws (params.yaml `cluster`, every seed) -> primary ARI mean ± std;
  - classification: logistic regression, 5-fold stratified CV on the train+val rows only (the test split
    is never read), accuracy mean ± std;
  - seconds to extract.
A metric is "within noise" when |bf16 - f32| <= max(std_f32, std_bf16) (the seed / fold std). The README's
float32-vs-bfloat16 table comes from this script; params.yaml's `precision` defaults follow it.
Needs the pipeline's inputs: data/interim/{catalog.parquet,text.parquet,images.npz} (`dvc repro prep_images
clean_text`) and the pretrained weights (`dvc repro pretrained`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.chdir(ROOT)

METHODS = ("vgg16", "efficientnet_lite0", "efficientnet_lite2", "bert", "mpnet")
PRECISIONS = ("float32", "bfloat16")


def features(method: str, precision: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(X, ids, seconds) of one registry entry at one precision, on the real inputs."""
    import pandas as pd

    from fkstudy import paths
    from fkstudy.image.registry import IMAGE
    from fkstudy.image.weights import WeightsPolicy
    from fkstudy.params import load_params
    from fkstudy.registry import Context
    from fkstudy.text.registry import TEXT

    params = load_params()
    policy = WeightsPolicy(dir=params.pretrained.dir, allow_random_init=False, allow_download=False)
    if method in TEXT:
        entry, section = TEXT[method], params.text_features
        text = pd.read_parquet(paths.TEXT)
        p = getattr(section, method).model_copy(update={"precision": precision})
        inputs, ids = text[f"{p.input}_{p.field}"].fillna("").tolist(), text["id"].to_numpy()
    else:
        from fkstudy.image.cache import load_image_cache, resized

        entry, section = IMAGE[method], params.deep_features
        p = getattr(section, method).model_copy(update={"precision": precision})
        images, ids, _ = load_image_cache(paths.IMAGE_CACHE)
        inputs = resized(images, p.input_size)
    ctx = Context(ids=list(ids), seed=params.seed, n_jobs=params.n_jobs, weights=policy)
    t = time.perf_counter()
    X, info = entry.load()(inputs, p, ctx)
    if info.get("weights") not in ("pretrained", "imagenet"):
        raise SystemExit(f"{method}: weights are {info.get('weights')!r}, not pretrained: the comparison would be moot")
    return np.asarray(X, np.float32), np.asarray(ids), time.perf_counter() - t


def scores(X: np.ndarray, ids: np.ndarray) -> dict:
    """Cluster ARI (every seed of the cluster stage's primary reduction) and train+val CV accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fkstudy import paths
    from fkstudy.data.catalog import load_catalog
    from fkstudy.evaluate import cluster
    from fkstudy.params import load_params

    params = load_params()
    catalog = load_catalog(paths.CATALOG).set_index("id").loc[ids]
    labels = catalog["category"].to_numpy()
    primary = params.cluster.primary
    only_primary = params.cluster.model_copy(update={"reductions": [primary], "primary_by_set": {}})
    ari = np.array([d.ari for d in cluster.evaluate(X, labels, only_primary, params.seed, params.n_jobs)])
    seen = catalog["split"].isin(["train", "val"]).to_numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=params.seed)
    acc = cross_val_score(clf, X[seen], labels[seen], cv=folds, n_jobs=1)
    return {"ari": float(ari.mean()), "ari_std": float(ari.std(ddof=1)) if len(ari) > 1 else 0.0,
            "cv_accuracy": float(acc.mean()), "cv_accuracy_std": float(acc.std(ddof=1)), "reduction": primary}


def worker(method: str, out: Path) -> None:
    runs = {}
    for precision in PRECISIONS:
        X, ids, seconds = features(method, precision)
        runs[precision] = (X, ids, seconds)
    (Xf, ids, tf), (Xb, _, tb) = runs["float32"], runs["bfloat16"]
    cos = (Xf * Xb).sum(1) / (np.linalg.norm(Xf, axis=1) * np.linalg.norm(Xb, axis=1) + 1e-12)
    row = {"method": method, "n": int(len(ids)), "dim": int(Xf.shape[1]), "cosine_mean": float(cos.mean()),
           "cosine_min": float(cos.min()), "seconds": {"float32": round(tf, 1), "bfloat16": round(tb, 1)},
           "float32": scores(Xf, ids), "bfloat16": scores(Xb, ids)}
    out.write_text(json.dumps(row))


def within(row: dict, key: str) -> tuple[float, bool]:
    f, b = row["float32"], row["bfloat16"]
    delta = b[key] - f[key]
    return delta, abs(delta) <= max(f[f"{key}_std"], b[f"{key}_std"])


def table(rows: list[dict]) -> str:
    lines = ["| method | f32 s | bf16 s | speed-up | cosine mean / min | ARI f32 | ARI bf16 | Δ ARI | "
             "CV acc f32 | CV acc bf16 | Δ acc | within noise |", "|" + "---|" * 12]
    for r in rows:
        f, b, s = r["float32"], r["bfloat16"], r["seconds"]
        (da, ok_a), (dc, ok_c) = within(r, "ari"), within(r, "cv_accuracy")
        lines.append(
            f"| {r['method']} | {s['float32']} | {s['bfloat16']} | {s['float32'] / s['bfloat16']:.1f}× | "
            f"{r['cosine_mean']:.4f} / {r['cosine_min']:.4f} | {f['ari']:.3f} ± {f['ari_std']:.3f} | "
            f"{b['ari']:.3f} ± {b['ari_std']:.3f} | {da:+.3f} | {f['cv_accuracy']:.3f} ± {f['cv_accuracy_std']:.3f} | "
            f"{b['cv_accuracy']:.3f} ± {b['cv_accuracy_std']:.3f} | {dc:+.3f} | {'yes' if ok_a and ok_c else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.out)
        return
    rows, load = [], [os.getloadavg()[0]]
    for method in a.methods:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            res = subprocess.run([sys.executable, __file__, "--worker", method, "--out", str(out)],
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True)
            if res.returncode or not out.exists():
                print(f"{method}: failed (exit {res.returncode})\n{res.stderr[-3000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(out.read_text()))
        print(json.dumps(rows[-1]), flush=True)
    load.append(os.getloadavg()[0])
    print(f"\nload average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f}\n")
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "load_average": load,
                                      "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
