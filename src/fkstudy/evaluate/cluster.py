"""Unsupervised evaluation of a feature set: reduce -> KMeans(k = n classes) -> ARI / silhouette.

One t-SNE draw is too noisy to compare methods, so every reduction is repeated
over `n_seeds` seeds and reported as mean ± std.

Scale: everything here is linear in the number of rows except t-SNE (its neighbour search is
quadratic with the cosine metric, and each draw costs minutes at 20k rows) and the silhouette
(all pairwise distances). Above `tsne_max_samples` / `silhouette_max_samples` rows those run on a
seeded stratified subsample of that size (a new one per seed); the metrics say how many rows
each figure used (`rows`, `silhouette_rows`). Below the thresholds nothing changes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ..files import FeatureFileError


def normalize(X: np.ndarray, how: str) -> np.ndarray:
    X = X.astype(np.float64)
    if how == "l2":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(norms > 0, norms, 1.0)
    if how == "standard":
        return StandardScaler().fit_transform(X)
    if how == "none":
        return X
    raise ValueError(f"unknown normalisation {how!r}")


@dataclass(frozen=True)
class Principal:
    """Every principal component of one matrix from one full SVD: `scores` [n, r] (U·S, as PCA.fit_transform) and
    `ratio` [r] (explained variance ratio). With the full solver PCA(n_components=k) computes this same SVD and
    keeps its first k columns, so slicing gives the same bytes: the PCA reduction, the explained-variance curve
    and the 2-D map of one feature set share one decomposition instead of one each."""

    scores: np.ndarray
    ratio: np.ndarray


def full_solver(X: np.ndarray) -> bool:
    return max(X.shape) <= 5000


def principal(X: np.ndarray, seed: int) -> Principal | None:
    """The full PCA of X, or None where PCA would use its randomized solver (large X: results depend on k)."""
    if not full_solver(X):
        return None
    model = PCA(n_components=int(min(X.shape[0] - 1, X.shape[1])), svd_solver="full", random_state=seed)
    return Principal(model.fit_transform(X), model.explained_variance_ratio_)


def pca(X: np.ndarray, n_components: int, seed: int, shared: Principal | None = None) -> np.ndarray:
    k = int(min(n_components, X.shape[0] - 1, X.shape[1]))
    if shared is not None:
        return shared.scores[:, :k]
    return PCA(n_components=k, svd_solver="full" if full_solver(X) else "randomized",
               random_state=seed).fit_transform(X)


def tsne(X: np.ndarray, perplexity: float, pca_components: int, seed: int, n_jobs: int = 1,
         metric: str = "euclidean", init: str = "random") -> np.ndarray:
    """2-D t-SNE; `pca_components` > 0 first reduces with PCA (faster, but measured to cost ARI here).

    With init="pca" sklearn's t-SNE ignores the seed (every draw is the same embedding); with
    init="random" each seed is a different draw, which is what repeating over seeds is for.
    """
    Z = pca(X, pca_components, seed) if 0 < pca_components < X.shape[1] else X
    perplexity = min(perplexity, (X.shape[0] - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, metric=metric, init=init, learning_rate="auto",
                random_state=seed, n_jobs=n_jobs).fit_transform(Z)


def lsa(X: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """Latent semantic analysis: truncated SVD of the (l2-normalised) rows, the result l2-normalised again,
    so KMeans' Euclidean distances are cosine distances in the latent space (the usual TF-IDF -> LSA ->
    KMeans recipe). Not centred, unlike PCA, so a sparse matrix keeps its meaning."""
    from sklearn.decomposition import TruncatedSVD

    k = int(min(n_components, X.shape[0] - 1, X.shape[1] - 1))
    Z = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed).fit_transform(X)
    return normalize(Z, "l2")


def explained_variance(X: np.ndarray, max_components: int, seed: int, shared: Principal | None = None) -> np.ndarray:
    """Cumulative share of the variance explained by the first 1..k principal components (the elbow)."""
    k = int(min(max_components, X.shape[0] - 1, X.shape[1]))
    if shared is not None:
        return np.cumsum(shared.ratio[:k])
    model = PCA(n_components=k, svd_solver="full" if full_solver(X) else "randomized", random_state=seed)
    return np.cumsum(model.fit(X).explained_variance_ratio_)


def reduce(X: np.ndarray, how: str, p, seed: int, n_jobs: int = 1, shared: Principal | None = None) -> np.ndarray:
    """`p`: the cluster params section (fkstudy.evaluate.params.ClusterParams); `shared`: X's full PCA."""
    if how == "none":
        return X
    if how == "pca":
        return pca(X, p.pca_components, seed, shared)
    if how == "lsa":
        return lsa(X, p.lsa_components, seed)
    if how == "tsne":
        return tsne(X, p.tsne_perplexity, p.tsne_pca_components, seed, n_jobs, p.tsne_metric, p.tsne_init)
    raise ValueError(f"unknown reduction {how!r}")


def subsample(labels: np.ndarray, max_samples: int, seed: int) -> np.ndarray | None:
    """Sorted row indices of a seeded, class-stratified subsample of `max_samples` rows;
    None when there are no more rows than that (or `max_samples` is 0: no limit)."""
    n = len(labels)
    if not max_samples or n <= max_samples:
        return None
    rows, _ = train_test_split(np.arange(n), train_size=int(max_samples), stratify=labels, random_state=seed)
    return np.sort(rows)


def silhouette(Z: np.ndarray, groups: np.ndarray, labels: np.ndarray, max_samples: int, seed: int) -> tuple[float, int]:
    """Silhouette of `groups` on Z (on a stratified subsample above `max_samples` rows) and the rows used."""
    rows = subsample(labels, max_samples, seed)
    if rows is not None:
        Z, groups = Z[rows], groups[rows]
    if len(np.unique(groups)) < 2:
        return float("nan"), len(groups)
    return float(silhouette_score(Z, groups)), len(groups)


def kmeans(Z: np.ndarray, k: int, seed: int, n_init: int) -> np.ndarray:
    return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(Z)


def matched_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy after the best one-to-one cluster -> class assignment (Hungarian)."""
    table = pd.crosstab(labels, clusters).to_numpy()
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / len(labels))


SEED_FREE = ("none", "pca", "lsa")  # computed once (PCA, LSA with the base seed): only KMeans' init varies


@dataclass
class Draw:
    reduction: str
    seed: int
    ari: float
    nmi: float
    matched_accuracy: float
    silhouette_clusters: float
    silhouette_true: float
    embedding: np.ndarray
    clusters: np.ndarray
    rows: np.ndarray | None = None   # row indices the draw ran on (None: every row)
    silhouette_rows: int = 0         # rows the silhouettes were computed on


def evaluate(X: np.ndarray, labels: np.ndarray, p, seed: int, n_jobs: int = 1, k: int | None = None,
             shared: Principal | None = None) -> list[Draw]:
    """All draws: every reduction in p['reductions'] × p['n_seeds'] seeds, KMeans with `k` clusters (default:
    the number of distinct labels).

    t-SNE draws run on a stratified subsample of `tsne_max_samples` rows when there are more
    (Draw.rows says which); silhouettes on one of `silhouette_max_samples` rows. `shared`: the full PCA of the
    normalised X (`principal(normalize(X, p.normalize), seed)`), reused instead of a new SVD.
    """
    labels = np.asarray(labels)
    k = k or len(np.unique(labels))
    Xn = normalize(X, p.normalize)
    draws = []
    for how in p.reductions:
        fixed = reduce(Xn, how, p, seed, n_jobs, shared) if how in SEED_FREE else None
        for s in range(seed, seed + p.n_seeds):
            rows = subsample(labels, p.tsne_max_samples, s) if how == "tsne" else None
            y = labels if rows is None else labels[rows]
            Z = fixed if fixed is not None else reduce(Xn if rows is None else Xn[rows], how, p, s, n_jobs)
            clusters = kmeans(Z, k, s, p.kmeans_n_init)
            sil_c, sil_rows = silhouette(Z, clusters, y, p.silhouette_max_samples, s)
            sil_t, _ = silhouette(Z, y, y, p.silhouette_max_samples, s)
            draws.append(Draw(how, s, float(adjusted_rand_score(y, clusters)),
                              float(normalized_mutual_info_score(y, clusters)),
                              matched_accuracy(y, clusters), sil_c, sil_t, Z, clusters, rows, sil_rows))
    return draws


def summarize(draws: list[Draw], primary: str) -> dict:
    """Flat metrics: `<metric>` for the primary reduction, `<reduction>.<metric>_mean/_std` for all,
    and `<reduction>.rows` / `.silhouette_rows`: how many rows those figures were computed on."""
    out: dict = {}
    frame = pd.DataFrame([{**{k: v for k, v in d.__dict__.items() if k not in ("embedding", "clusters", "rows")},
                           "rows": len(d.clusters)} for d in draws])
    for how, g in frame.groupby("reduction", sort=False):
        stats = {}
        for m in ("ari", "nmi", "matched_accuracy", "silhouette_clusters", "silhouette_true"):
            stats[f"{m}_mean"] = round(float(g[m].mean()), 4)
            stats[f"{m}_std"] = round(float(g[m].std(ddof=1)) if len(g) > 1 else 0.0, 4)
        stats["n_seeds"] = int(len(g))
        stats["rows"] = int(g["rows"].max())
        stats["silhouette_rows"] = int(g["silhouette_rows"].max())
        out[how] = stats
    if primary not in out:
        raise ValueError(f"cluster.primary={primary!r} is not among cluster.reductions {list(out)}")
    best = max(out, key=lambda h: out[h]["ari_mean"])
    out.update(ari=out[primary]["ari_mean"], ari_std=out[primary]["ari_std"],
               silhouette=out[primary]["silhouette_clusters_mean"], ari_rows=out[primary]["rows"],
               primary_reduction=primary,
               best_reduction=best, best_ari=out[best]["ari_mean"])
    return out


def centroid_distances(X: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Cosine distance between class centroids of the (l2-normalised) features."""
    Xn = normalize(X, "l2")
    classes = sorted(np.unique(labels))
    C = np.stack([Xn[labels == c].mean(0) for c in classes])
    C = C / np.linalg.norm(C, axis=1, keepdims=True).clip(min=1e-12)
    D = 1 - C @ C.T
    np.fill_diagonal(D, 0.0)
    return pd.DataFrame(D.clip(min=0), index=classes, columns=classes)


def contingency(labels: np.ndarray, clusters: np.ndarray) -> pd.DataFrame:
    """Categories × clusters counts, clusters ordered to match categories (Hungarian)."""
    table = pd.crosstab(pd.Series(labels, name="category"), pd.Series(clusters, name="cluster"))
    r, c = linear_sum_assignment(-table.to_numpy())
    order = [table.columns[j] for _, j in sorted(zip(r, c))]
    order += [col for col in table.columns if col not in order]
    return table[order]


def labels_for(ids: np.ndarray, catalog: pd.DataFrame, where: str = "features") -> np.ndarray:
    """True categories for feature rows, joined on product id (never on row order)."""
    by_id = catalog.set_index("id")["category"]
    unknown = [i for i in ids if i not in by_id.index]
    if unknown:
        raise FeatureFileError(f"{where}: {len(unknown)} feature ids are not in the catalog, e.g. {unknown[:3]}")
    return by_id.loc[list(ids)].to_numpy()


# ------------------------------------------------------------------------------ one feature set, reported
@dataclass
class ClusterResult:
    metrics: dict                 # metrics/cluster/<set>.json
    distances: pd.DataFrame       # cosine distances between category centroids

    def title(self, n_seeds: int, first: Draw) -> str:
        m = self.metrics
        title = f"{m['set']}: {first.reduction}, ARI {m['ari']:.3f} ± {m['ari_std']:.3f} over {n_seeds} seeds"
        if first.rows is not None:
            title += f" (subsample of {len(first.rows)} / {m['n']} rows per seed)"
        return title


def primary_of(p, set_name: str) -> str:
    """The reduction reported as a set's `ari`: its own (`cluster.primary_by_set`) or the default."""
    return p.primary_by_set.get(set_name, p.primary)


def params_for(p, set_name: str):
    """The cluster params one set runs with: its own t-SNE perplexity (`cluster.tsne_perplexity_by_set`, chosen by
    the `tsne_perplexity` sweep on the train+val rows' ARI: sweeps.yaml) or the default."""
    return p.model_copy(update={"tsne_perplexity": p.tsne_perplexity_by_set.get(set_name, p.tsne_perplexity)})


def split_aris(draws: list[Draw], reduction: str, labels: np.ndarray, in_split: np.ndarray) -> list[float]:
    """Each draw's ARI of one reduction restricted to the rows of a split (`in_split`: a mask over all rows):
    the train+val rows are what a choice (a sweep: `fkstudy sweep`) may be made on, the test rows are then
    the held-out check of that choice."""
    labels, in_split = np.asarray(labels), np.asarray(in_split, dtype=bool)
    out = []
    for d in (d for d in draws if d.reduction == reduction):
        rows = np.arange(len(labels)) if d.rows is None else d.rows
        keep = in_split[rows]
        out.append(float(adjusted_rand_score(labels[rows][keep], d.clusters[keep])) if keep.sum() > 1 else np.nan)
    return out


def split_ari(draws: list[Draw], reduction: str, labels: np.ndarray, in_split: np.ndarray) -> float:
    """Mean of `split_aris` (NaN when no draw of that reduction)."""
    out = split_aris(draws, reduction, labels, in_split)
    return float(np.mean(out)) if out else float("nan")


def variance_summary(cumulative: np.ndarray) -> dict:
    """Explained variance at 2 / 10 / 50 components and the components needed for 90 % (the seed's elbow)."""
    out = {f"pca_variance_{k}": round(float(cumulative[min(k, len(cumulative)) - 1]), 4) for k in (2, 10, 50)}
    reach = np.flatnonzero(cumulative >= 0.9)
    out["pca_components_for_90"] = int(reach[0] + 1) if len(reach) else None
    return out


def summary_metrics(name: str, X: np.ndarray, ids, labels, draws: list[Draw], primary: str, meta: dict,
                    cumulative_variance: np.ndarray | None = None) -> ClusterResult:
    """The metrics of one feature set: size, weights, centroid distance range, `summarize(draws)` and the
    PCA explained variance."""
    summary = summarize(draws, primary)
    if cumulative_variance is not None:
        summary.update(variance_summary(cumulative_variance))
    distances = centroid_distances(X, labels)
    off_diag = distances.to_numpy()[~np.eye(len(distances), dtype=bool)]
    metrics = {"set": name, "n": int(len(ids)), "dim": int(X.shape[1]), "weights": meta.get("weights", "n/a"),
               "centroid_distance_min": round(float(off_diag.min()), 4),
               "centroid_distance_max": round(float(off_diag.max()), 4), **summary}
    return ClusterResult(metrics, distances)


def primary_map(X: np.ndarray, ids, labels, draws: list[Draw], p, seed: int, primary: str,
                shared: Principal | None = None):
    """(xy, ids, labels, draw) of the 2-D map shown: the first draw of the primary reduction — its t-SNE
    coordinates, or the first two principal components — on the rows that draw used."""
    first = next(d for d in draws if d.reduction == primary)
    xy = first.embedding if first.reduction == "tsne" else pca(normalize(X, p.normalize), 2, seed, shared)
    if first.rows is not None:  # a t-SNE draw on a subsample (cluster.tsne_max_samples)
        ids, labels = np.asarray(ids)[first.rows], np.asarray(labels)[first.rows]
    return xy, ids, labels, first


def scatter_table(ids, xy: np.ndarray, labels, clusters) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "x": xy[:, 0].round(4), "y": xy[:, 1].round(4), "category": labels,
                         "cluster": clusters})


def draws_table(draws: list[Draw]) -> pd.DataFrame:
    return pd.DataFrame([{"reduction": d.reduction, "seed": d.seed, "ari": round(d.ari, 4),
                          "silhouette": round(d.silhouette_clusters, 4)} for d in draws])
