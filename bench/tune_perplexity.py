"""Choose each feature set's t-SNE perplexity on the train+val rows only.

    python bench/tune_perplexity.py [--sets text_mpnet image_vgg16 ...] [--perplexities 30 50 80]
                                    [--seeds 3] [--json bench/perplexity_real_data.json]

t-SNE is unsupervised and maps every product (as the seed study did), so the labels enter only through the
score. For each set and candidate perplexity this runs the cluster stage's own t-SNE + KMeans draws
(params.yaml `cluster`, only the perplexity and the number of seeds changed) and scores each draw's
clustering by ARI on the train+val rows only: the test rows' labels are never read here. The best mean
wins; a candidate must beat the default by more than the larger of the two seed stds, else the default
stays (no choice on noise). Runs accumulate in the JSON (a run adds or replaces its own set × perplexity
rows; the choice is made over all of them), so a set can be probed further later. Paste the printed `tsne_perplexity_by_set` into params.yaml; the cluster
stages then report `ari` (every row, as before), `ari_trainval_rows` (what the choice saw) and
`ari_test_rows` (the held-out check).
Needs the feature files (`dvc repro cluster` upstream: data/features/*.npz) and the catalog.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import _bench

os.chdir(_bench.ROOT)
_bench.stage_process()  # the stages' pinned numerics and thread waiting, before numpy loads

import numpy as np  # noqa: E402

DEFAULT_SETS = ("text_tfidf", "text_bert", "text_mpnet", "text_use", "image_vgg16", "image_efficientnet_lite0",
                "image_efficientnet_lite2")


def trainval_ari(name: str, perplexity: float, n_seeds: int, params) -> list[float]:
    """The train+val rows' ARI of each t-SNE + KMeans draw of one set at one perplexity."""
    from fkstudy import files, paths
    from fkstudy.data.catalog import load_catalog
    from fkstudy.evaluate import cluster

    path = paths.feature_set(name)
    X, ids, _ = files.load_features(path)
    catalog = load_catalog(paths.CATALOG, features={path: ids})
    split = catalog.set_index("id").loc[list(ids), "split"].to_numpy()
    trainval = split != "test"
    labels = np.where(trainval, cluster.labels_for(ids, catalog, path), "")   # test labels blanked: never read
    p = params.cluster.model_copy(update={"reductions": ["tsne"], "primary": "tsne", "primary_by_set": {},
                                          "tsne_perplexity": float(perplexity), "n_seeds": n_seeds})
    k = catalog["category"].nunique()
    draws = cluster.evaluate(X, labels, p, params.seed, params.n_jobs, k=k)
    return [cluster.split_ari([d], "tsne", labels, trainval) for d in draws]


def main() -> None:
    from fkstudy.params import load_params

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS))
    ap.add_argument("--perplexities", nargs="+", type=float, default=[30.0, 50.0, 80.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", default="bench/perplexity_real_data.json")
    _bench.add_arguments(ap)
    args = ap.parse_args()
    bench = _bench.Bench("tune_perplexity", args.allow_loaded)  # its seconds are timings
    params = load_params()
    default = params.cluster.tsne_perplexity
    out = Path(args.json)
    # earlier measurements (same seeds) are kept: a run adds or replaces its own (set, perplexity) rows
    old = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    rows = [r for r in old.get("rows", []) if r["seeds"] == args.seeds and not
            (r["set"] in args.sets and r["perplexity"] in args.perplexities)]
    for name in args.sets:
        for perp in args.perplexities:
            t0 = time.perf_counter()
            aris = trainval_ari(name, perp, args.seeds, params)
            rows.append({"set": name, "perplexity": perp, "trainval_ari_mean": round(float(np.mean(aris)), 4),
                         "trainval_ari_std": round(float(np.std(aris, ddof=1)) if len(aris) > 1 else 0.0, 4),
                         "seeds": args.seeds, "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{name:28s} perplexity {perp:5.0f}: train+val ARI {rows[-1]['trainval_ari_mean']:.4f} ± "
                  f"{rows[-1]['trainval_ari_std']:.4f} ({rows[-1]['seconds']:.0f} s)  {bench.note()}", flush=True)
    rows.sort(key=lambda r: (r["set"], r["perplexity"]))
    chosen = {}
    for name in dict.fromkeys(r["set"] for r in rows):
        stats = {r["perplexity"]: (r["trainval_ari_mean"], r["trainval_ari_std"]) for r in rows if r["set"] == name}
        base = stats.get(default)
        best = max(stats, key=lambda k: stats[k][0])
        if base is None or (best != default and stats[best][0] - base[0] > max(stats[best][1], base[1])):
            chosen[name] = best
    doc = {"protocol": "t-SNE on every row, KMeans, ARI on the train+val rows only (test labels never read); "
                       "a perplexity replaces the default only when its mean beats the default's by more than the "
                       "larger seed std", "default_perplexity": default, "seeds": args.seeds,
           "seed_start": params.seed, "rows": rows, "tsne_perplexity_by_set": chosen}
    bench.write_json(out, doc)
    print(f"\ntsne_perplexity_by_set: {json.dumps(chosen)}   # -> params.yaml cluster; table in {args.json}")


if __name__ == "__main__":
    main()
