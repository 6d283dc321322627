"""Stage cluster@<set>: reduce -> KMeans -> ARI / silhouette over seeds, for one feature set
(data/features/<set>.npz), with the 2-D map, the contingency table and the centroid distances."""
import _bootstrap  # noqa: F401
import numpy as np
import pandas as pd

from fkstudy import files, paths
from fkstudy.data.catalog import load_catalog
from fkstudy.evaluate import cluster
from fkstudy.plots import cluster as cluster_plots
from fkstudy.runtime import run_stage, stage_argument, start_stage


def main(argv=None) -> None:
    (name,) = stage_argument(argv, [None], "python stages/cluster.py <feature set>")  # start_stage: a dvc.yaml stage
    stage = start_stage(f"cluster@{name}")
    p, seed = cluster.params_for(stage.params.cluster, name), stage.params.seed
    path = paths.feature_set(name)
    X, ids, meta = files.load_features(path)
    catalog = load_catalog(paths.CATALOG, features={path: ids})
    labels = cluster.labels_for(ids, catalog, path)
    primary = cluster.primary_of(p, name)
    with stage.timed(f"cluster {name}", "seconds"):
        shared = cluster.principal(cluster.normalize(X, p.normalize), seed)   # one SVD for PCA, variance, map
        draws = cluster.evaluate(X, labels, p, seed, stage.params.n_jobs, shared=shared)
        variance = cluster.explained_variance(cluster.normalize(X, p.normalize), p.variance_components, seed, shared)
    result = cluster.summary_metrics(name, X, ids, labels, draws, primary, meta, variance)
    # the primary ARI on the rows a per-set choice may look at (train+val) and on the held-out test rows
    test = catalog.set_index("id").loc[list(ids), "split"].to_numpy() == "test"
    trainval = cluster.split_aris(draws, primary, labels, ~test)   # a sweep's choice reads these two, never test
    result.metrics.update(tsne_perplexity=p.tsne_perplexity,
                          ari_trainval_rows=round(float(np.mean(trainval)), 4),
                          ari_trainval_rows_std=round(float(np.std(trainval, ddof=1)) if len(trainval) > 1 else 0.0, 4),
                          ari_test_rows=round(cluster.split_ari(draws, primary, labels, test), 4))
    files.write_json(paths.metrics("cluster", name), result.metrics)
    stage.write_timings("cluster", name, n=int(len(ids)), dim=int(X.shape[1]), draws=len(draws))

    out = paths.plots("cluster", name)
    xy, map_ids, map_labels, first = cluster.primary_map(X, ids, labels, draws, p, seed, primary, shared)
    files.write_csv(f"{out}/scatter.csv", cluster.scatter_table(map_ids, xy, map_labels, first.clusters))
    files.write_csv(f"{out}/draws.csv", cluster.draws_table(draws))
    files.write_csv(f"{out}/pca_variance.csv", pd.DataFrame({"components": range(1, len(variance) + 1),
                                                             "explained_variance": variance.round(4)}))
    files.save_figure(cluster_plots.scatter_pair(xy, map_labels, first.clusters, result.title(p.n_seeds, first)),
                      f"{out}/scatter.png")
    files.save_figure(cluster_plots.heatmap(cluster.contingency(map_labels, first.clusters),
                                            f"{name}: category × cluster (seed {first.seed})"), f"{out}/contingency.png")
    files.save_figure(cluster_plots.heatmap(result.distances.round(2),
                                            f"{name}: cosine distance between category centroids", ".2f", "viridis"),
                      f"{out}/centroid_distances.png")


if __name__ == "__main__":
    run_stage(main)
