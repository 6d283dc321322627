"""Clustering evaluation on generated blobs: ARI, summaries, matching, and the join on id."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from threadpoolctl import threadpool_limits

from fkstudy.evaluate import cluster as cl
from fkstudy.evaluate.params import ClusterParams

RAW = dict(reductions=["none", "pca", "tsne"], primary="tsne", primary_by_set={}, tsne_perplexity_by_set={}, pca_components=5,
           lsa_components=4, variance_components=10, tsne_perplexity=10,
           tsne_pca_components=10, tsne_metric="euclidean", tsne_init="random",
           normalize="l2", n_seeds=2, kmeans_n_init=4, tsne_max_samples=0, silhouette_max_samples=0)


def params(**changes) -> ClusterParams:
    """The `cluster` section of these tests, validated, with `changes`."""
    return ClusterParams.model_validate({**RAW, **changes})


P = params()
CLASSES = np.array(["Baby Care", "Computers", "Watches", "Home Furnishing"])


@pytest.fixture(scope="module", autouse=True)
def one_openmp_thread():
    """t-SNE/KMeans use OpenMP; on this shared 2-core machine libgomp's spin-waiting barriers made a
    120-point t-SNE take ~80 s with 2 threads (0.2 s with 1 thread or OMP_WAIT_POLICY=passive)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 20)) * 10 + 5  # 4 distinct directions: l2 normalisation keeps them apart
    X, y = make_blobs(n_samples=120, centers=centers, cluster_std=0.5, random_state=0)
    ids = np.array([f"p{i:04d}" for i in rng.permutation(1000)[:120]])
    catalog = pd.DataFrame({"id": ids, "category": CLASSES[y]}).sort_values("id").reset_index(drop=True)
    return X.astype(np.float32), ids, CLASSES[y], catalog


@pytest.fixture(scope="module")
def draws(blobs):
    X, _, labels, _ = blobs
    return cl.evaluate(X, labels, P, seed=3)


def test_all_reductions_recover_the_blobs(draws):
    assert [(d.reduction, d.seed) for d in draws] == [(r, s) for r in ("none", "pca", "tsne") for s in (3, 4)]
    for d in draws:
        assert d.ari > 0.99 and d.nmi > 0.99 and d.matched_accuracy == 1.0, d.reduction
        assert d.silhouette_true > 0.5 and d.clusters.shape == (120,)
    shapes = {d.reduction: d.embedding.shape for d in draws}
    assert shapes == {"none": (120, 20), "pca": (120, 5), "tsne": (120, 2)}


def test_seed_free_reductions_share_one_embedding(draws):
    pca_draws = [d for d in draws if d.reduction == "pca"]
    np.testing.assert_array_equal(pca_draws[0].embedding, pca_draws[1].embedding)
    assert pca_draws[0].seed != pca_draws[1].seed


def test_tsne_draws_differ_per_seed(draws):
    """init="random": each seed is a new t-SNE draw (init="pca" would ignore the seed)."""
    tsne_draws = [d for d in draws if d.reduction == "tsne"]
    assert not np.allclose(tsne_draws[0].embedding, tsne_draws[1].embedding)


def test_summarize_keys(draws):
    s = cl.summarize(draws, "tsne")
    for how in ("none", "pca", "tsne"):
        assert s[how]["n_seeds"] == 2
        assert set(s[how]) == {f"{m}_{st}" for m in ("ari", "nmi", "matched_accuracy", "silhouette_clusters",
                                                        "silhouette_true") for st in ("mean", "std")} | {
            "n_seeds", "rows", "silhouette_rows"}
        assert s[how]["rows"] == s[how]["silhouette_rows"] == 120
    assert s["ari_rows"] == 120
    assert s["ari"] == s["tsne"]["ari_mean"] and s["ari_std"] == s["tsne"]["ari_std"]
    assert s["silhouette"] == s["tsne"]["silhouette_clusters_mean"]
    assert s["primary_reduction"] == "tsne" and s["best_reduction"] in ("none", "pca", "tsne")
    assert s["best_ari"] == max(s[h]["ari_mean"] for h in ("none", "pca", "tsne"))
    with pytest.raises(ValueError, match="cluster.primary='umap' is not among"):
        cl.summarize(draws, "umap")


def _draw(how, seed, ari):
    return cl.Draw(how, seed, ari, 0.5, 0.5, 0.1, 0.2, np.zeros((2, 2)), np.zeros(2))


def test_summarize_mean_std_by_hand():
    s = cl.summarize([_draw("pca", 0, 0.2), _draw("pca", 1, 0.4), _draw("tsne", 0, 0.9)], "pca")
    assert s["pca"]["ari_mean"] == 0.3 and s["pca"]["ari_std"] == round(np.std([0.2, 0.4], ddof=1), 4)
    assert s["tsne"]["ari_std"] == 0.0 and s["tsne"]["n_seeds"] == 1
    assert s["ari"] == 0.3 and s["best_reduction"] == "tsne" and s["best_ari"] == 0.9


def test_matched_accuracy():
    labels = np.array(["a", "a", "b", "b", "c", "c"])
    assert cl.matched_accuracy(labels, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert cl.matched_accuracy(labels, np.array([2, 2, 0, 1, 1, 1])) == pytest.approx(5 / 6)
    assert cl.matched_accuracy(labels, np.array([0, 0, 0, 0, 0, 0])) == pytest.approx(2 / 6)


def test_contingency_orders_clusters_to_match_categories():
    labels = np.array(["a", "a", "a", "b", "b", "c", "c", "c"])
    clusters = np.array([2, 2, 0, 0, 0, 1, 1, 2])
    t = cl.contingency(labels, clusters)
    assert list(t.index) == ["a", "b", "c"] and list(t.columns) == [2, 0, 1]
    assert np.diag(t.to_numpy()).tolist() == [2, 2, 2] and t.to_numpy().sum() == 8


def test_labels_for_joins_on_id(blobs):
    X, ids, labels, catalog = blobs
    assert list(catalog["id"]) != list(ids)  # catalog order differs from feature order
    np.testing.assert_array_equal(cl.labels_for(ids, catalog), labels)


def test_feature_row_order_does_not_change_ari(blobs):
    """The seed study's CLIP ARI of -0.0003: labels in catalog order, features in another order."""
    X, ids, _, catalog = blobs
    p = params(reductions=["pca"], primary="pca", n_seeds=1)
    perm = np.random.default_rng(1).permutation(len(ids))
    results = []
    for order in (np.arange(len(ids)), perm):
        Xo, ido = X[order], ids[order]
        results.append(cl.evaluate(Xo, cl.labels_for(ido, catalog), p, seed=0)[0].ari)
    assert results[0] > 0.99 and results[1] == pytest.approx(results[0])
    wrong = cl.evaluate(X[perm], catalog["category"].to_numpy(), p, seed=0)[0].ari  # joined on row order
    assert abs(wrong) < 0.1


def test_labels_for_unknown_ids(blobs):
    _, ids, _, catalog = blobs
    with pytest.raises(ValueError, match=r"clip.npz: 2 feature ids are not in the catalog.*'zz1'"):
        cl.labels_for(np.array([ids[0], "zz1", "zz2"]), catalog, "clip.npz")


def test_centroid_distances():
    X = np.array([[1, 0, 0], [2, 0, 0], [0, 3, 0], [0, 1, 0], [1, 1, 0], [5, 5, 0]], dtype=np.float32)
    labels = np.array(["x", "x", "y", "y", "z", "z"])
    D = cl.centroid_distances(X, labels)
    assert list(D.index) == ["x", "y", "z"] and list(D.columns) == ["x", "y", "z"]
    A = D.to_numpy()
    np.testing.assert_allclose(A, A.T)
    np.testing.assert_array_equal(np.diag(A), 0)
    assert A.min() >= 0
    assert A[0, 1] == pytest.approx(1.0)                   # orthogonal classes
    assert A[0, 2] == pytest.approx(1 - np.sqrt(0.5))      # 45 degrees


def test_normalize():
    X = np.array([[3, 4], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(cl.normalize(X, "l2"), [[0.6, 0.8], [0, 0]])
    S = cl.normalize(np.array([[1, 10], [3, 30]], dtype=float), "standard")
    np.testing.assert_allclose(S, [[-1, -1], [1, 1]])
    assert cl.normalize(X, "none").dtype == np.float64
    with pytest.raises(ValueError, match="unknown normalisation"):
        cl.normalize(X, "minmax")
    with pytest.raises(ValueError, match="unknown reduction"):
        cl.reduce(X, "umap", P, 0)


def test_small_inputs_clamp_pca_and_perplexity():
    X = np.random.default_rng(0).normal(size=(12, 4))
    assert cl.pca(X, 50, 0).shape == (12, 4)
    assert cl.tsne(X, perplexity=30, pca_components=50, seed=0).shape == (12, 2)  # perplexity < n


def test_subsample_is_seeded_stratified_and_off_below_the_threshold():
    labels = np.repeat(CLASSES, [400, 300, 200, 100])
    assert cl.subsample(labels, 1000, 0) is None and cl.subsample(labels, 0, 0) is None  # not above / no limit
    rows = cl.subsample(labels, 500, 7)
    assert len(rows) == 500 and len(np.unique(rows)) == 500 and np.all(np.diff(rows) > 0)
    counts = pd.Series(labels[rows]).value_counts()
    assert counts.to_dict() == {"Baby Care": 200, "Computers": 150, "Watches": 100, "Home Furnishing": 50}
    np.testing.assert_array_equal(rows, cl.subsample(labels, 500, 7))
    assert not np.array_equal(rows, cl.subsample(labels, 500, 8))


@pytest.fixture(scope="module")
def big_blobs():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(4, 10)) * 10 + 5
    X, y = make_blobs(n_samples=600, centers=centers, cluster_std=0.5, random_state=1)
    return X.astype(np.float32), CLASSES[y]


def test_thresholds_above_n_change_nothing(big_blobs):
    """The default thresholds (3000) sit above the 1050-product catalog: the same draws as no limit."""
    X, labels = big_blobs
    unlimited = cl.evaluate(X, labels, params(tsne_pca_components=0), seed=0)
    limited = cl.evaluate(X, labels, params(tsne_pca_components=0, tsne_max_samples=600, silhouette_max_samples=600),
                          seed=0)
    for a, b in zip(unlimited, limited):
        assert b.rows is None and b.silhouette_rows == 600
        assert (a.ari, a.silhouette_clusters, a.silhouette_true) == (b.ari, b.silhouette_clusters, b.silhouette_true)
        np.testing.assert_array_equal(a.embedding, b.embedding)


def test_tsne_and_silhouette_on_a_subsample_above_the_threshold(big_blobs):
    X, labels = big_blobs
    p = params(tsne_max_samples=200, silhouette_max_samples=150)
    draws = cl.evaluate(X, labels, p, seed=0)
    for d in draws:
        assert d.silhouette_rows == 150 and d.ari > 0.99
        if d.reduction == "tsne":  # a new stratified subsample per seed, KMeans/ARI on its rows only
            assert d.embedding.shape == (200, 2) and d.clusters.shape == (200,) and len(d.rows) == 200
            np.testing.assert_array_equal(d.rows, cl.subsample(labels, 200, d.seed))
        else:  # none / PCA: every row (linear), only the silhouette is subsampled
            assert d.rows is None and d.clusters.shape == (600,)
    s = cl.summarize(draws, "tsne")
    assert s["tsne"]["rows"] == 200 and s["pca"]["rows"] == 600 and s["ari_rows"] == 200
    assert s["none"]["silhouette_rows"] == 150


def test_subsample_thresholds_are_validated():
    from pathlib import Path

    import yaml

    from fkstudy.params import ParamsError, load_params, validate_params

    path = Path(__file__).resolve().parents[2] / "params.yaml"
    real = load_params(path)
    assert real.cluster.tsne_max_samples > 1050 and real.cluster.silhouette_max_samples > 1050
    raw = yaml.safe_load(path.read_text())
    for bad in (50, -1):
        with pytest.raises(ParamsError, match="cluster.tsne_max_samples"):
            validate_params({**raw, "cluster": {**raw["cluster"], "tsne_max_samples": bad}})
    assert validate_params({**raw, "cluster": {**raw["cluster"], "silhouette_max_samples": 0}}).cluster \
        .silhouette_max_samples == 0


def test_lsa_rows_are_unit_length_and_cluster_separable_data():
    rng = np.random.default_rng(0)
    X = np.abs(np.concatenate([rng.normal(0, 1, (20, 30)) + np.eye(30)[0] * 6,
                               rng.normal(0, 1, (20, 30)) + np.eye(30)[1] * 6]))
    Z = cl.lsa(cl.normalize(X, "l2"), 4, seed=0)
    assert Z.shape == (40, 4)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-6)
    labels = np.repeat(["a", "b"], 20)
    draws = cl.evaluate(X, labels, params(reductions=["lsa"], primary="lsa"), seed=0)
    assert [d.reduction for d in draws] == ["lsa", "lsa"] and min(d.ari for d in draws) > 0.9


def test_a_set_s_own_perplexity_and_the_split_aris():
    p = params(tsne_perplexity_by_set={"text_mpnet": 50})
    assert cl.params_for(p, "text_mpnet").tsne_perplexity == 50 and cl.params_for(p, "text_bert").tsne_perplexity == 10
    # a typo is an error, never silently the default: checked against the methods params.yaml declares, as a
    # stage loads the section (validate_params passes the whole file as context)
    import yaml

    from fkstudy.params import ParamsError, validate_params

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    raw["cluster"]["tsne_perplexity_by_set"] = {"text_mpnett": 50}
    with pytest.raises(ParamsError, match=r"'cluster.tsne_perplexity_by_set'.*\['text_mpnett'\] are not feature sets"):
        validate_params(raw, sections=["cluster"])
    labels = np.repeat(["a", "b", "c"], 4)
    clusters = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 1, 2])   # the last class has one row in the wrong cluster
    draw = cl.Draw("tsne", 0, 0.0, 0.0, 0.0, 0.0, 0.0, np.zeros((12, 2)), clusters)
    first_two = np.arange(12) < 8
    assert cl.split_ari([draw], "tsne", labels, first_two) == pytest.approx(1.0)
    assert cl.split_ari([draw], "tsne", labels, ~first_two) < 1.0
    sub = cl.Draw("tsne", 0, 0.0, 0.0, 0.0, 0.0, 0.0, np.zeros((4, 2)), clusters[8:], rows=np.arange(8, 12))
    assert cl.split_ari([sub], "tsne", labels, ~first_two) == cl.split_ari([draw], "tsne", labels, ~first_two)
    assert np.isnan(cl.split_ari([draw], "pca", labels, first_two))   # no draw of that reduction
    # one value per draw (the sweep's noise band is their std)
    assert cl.split_aris([draw, sub], "tsne", labels, ~first_two) == [cl.split_ari([draw], "tsne", labels, ~first_two)] * 2


def test_primary_by_set_and_explained_variance():
    p = params(reductions=["pca", "lsa"], primary="pca", primary_by_set={"text_tfidf": "lsa"})
    assert cl.primary_of(p, "text_tfidf") == "lsa" and cl.primary_of(p, "text_bow") == "pca"
    with pytest.raises(ValueError, match="not among cluster.reductions"):
        params(primary_by_set={"text_tfidf": "lsa"})
    X = np.random.default_rng(1).normal(0, 1, (30, 8)) * np.arange(8, 0, -1)
    cum = cl.explained_variance(X, 8, seed=0)
    assert cum.shape == (8,) and np.all(np.diff(cum) >= -1e-12) and cum[-1] == pytest.approx(1.0)
    summary = cl.variance_summary(cum)
    assert summary["pca_variance_2"] == round(float(cum[1]), 4) and 1 <= summary["pca_components_for_90"] <= 8


def test_one_shared_svd_gives_the_bytes_of_separate_pcas():
    """PCA, the explained-variance curve and the 2-D map of a set share one full SVD (cluster.principal): the same
    bytes as fitting each on its own."""
    X = cl.normalize(np.random.default_rng(0).normal(size=(120, 40)), "l2")
    shared = cl.principal(X, seed=3)
    for k in (2, 10, 39, 50):
        assert np.array_equal(cl.pca(X, k, 3, shared), cl.pca(X, k, 3))
    assert np.array_equal(cl.explained_variance(X, 30, 3, shared), cl.explained_variance(X, 30, 3))
    assert cl.principal(np.zeros((10, 6000)), 0) is None   # randomized solver there: results depend on k
