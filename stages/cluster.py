"""Stage cluster@<set>: reduce -> KMeans -> ARI/silhouette over seeds, for one feature file."""
import _bootstrap  # noqa: F401
import sys

import numpy as np
import pandas as pd

from fkstudy import io
from fkstudy.data.catalog import load_catalog
from fkstudy.evaluate import cluster as cl
from fkstudy.plots import cluster as cplots
from fkstudy.runtime import start_stage, timed, write_timings

if len(sys.argv) != 3:
    sys.exit("usage: cluster.py <set-name> <features.npz>")
name, path = sys.argv[1], sys.argv[2]
params = start_stage(f"cluster@{name}")
p = params["cluster"]
X, ids, meta = io.load_features(path)
catalog = load_catalog("data/interim/catalog.parquet", features={path: ids})
labels = cl.labels_for(ids, catalog, path)

timing: dict = {}
with timed(f"cluster {name}", timing, "seconds"):
    draws = cl.evaluate(X, labels, p, params["seed"], params["n_jobs"])
summary = cl.summarize(draws, p["primary"])
distances = cl.centroid_distances(X, labels)
off_diag = distances.to_numpy()[~np.eye(len(distances), dtype=bool)]
metrics = {"set": name, "n": int(len(ids)), "dim": int(X.shape[1]), "weights": meta.get("weights", "n/a"),
           "centroid_distance_min": round(float(off_diag.min()), 4),
           "centroid_distance_max": round(float(off_diag.max()), 4), **summary}
io.write_json(f"metrics/cluster/{name}.json", metrics)
write_timings("cluster", {"n": int(len(ids)), "dim": int(X.shape[1]), "draws": len(draws), **timing}, name)

first = next(d for d in draws if d.reduction == p["primary"])
# 2-D map of the primary draw: t-SNE coordinates, or the first two principal components
xy = first.embedding if first.reduction == "tsne" else cl.pca(cl.normalize(X, p["normalize"]), 2, params["seed"])
if first.rows is not None:  # a t-SNE draw on a subsample (cluster.tsne_max_samples): map and tables on those rows
    ids, labels = ids[first.rows], labels[first.rows]
out = f"plots/cluster/{name}"
io.write_csv(f"{out}/scatter.csv", pd.DataFrame({"id": ids, "x": xy[:, 0].round(4), "y": xy[:, 1].round(4),
                                                 "category": labels, "cluster": first.clusters}))
io.write_csv(f"{out}/draws.csv", pd.DataFrame([{"reduction": d.reduction, "seed": d.seed, "ari": round(d.ari, 4),
                                                "silhouette": round(d.silhouette_clusters, 4)} for d in draws]))
title = f"{name}: {first.reduction}, ARI {summary['ari']:.3f} ± {summary['ari_std']:.3f} over {p['n_seeds']} seeds"
if first.rows is not None:
    title += f" (subsample of {len(first.rows)} / {metrics['n']} rows per seed)"
io.save_figure(cplots.scatter_pair(xy, labels, first.clusters, title), f"{out}/scatter.png")
io.save_figure(cplots.heatmap(cl.contingency(labels, first.clusters), f"{name}: category × cluster (seed {first.seed})"),
               f"{out}/contingency.png")
io.save_figure(cplots.heatmap(distances.round(2), f"{name}: cosine distance between category centroids", ".2f",
                              "viridis"), f"{out}/centroid_distances.png")
