"""No leakage: every learned step whose output feeds a test-set metric is fitted on train ids only.

One test per learned step, on generated data where the test rows are distinctive (words and
values that occur nowhere else). Two checks recur:
  * absence: nothing learnt holds a test-only token / value (vocabulary, idf, Word2Vec, codebook);
  * invariance: replacing every test row by something else leaves the learnt state and every
    non-test output bit-identical — the strongest form of "never saw the test rows".
Classifier fits are spied on: no matrix a fit receives contains a test row.
The unsupervised `cluster` stage fits on all rows on purpose; its test says why that is no leak.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from threadpoolctl import threadpool_limits

from fkstudy import files, fusion_rules, paths
from fkstudy.data.splits import split_by_id
from fkstudy.registry import Context
from fkstudy.text import features as F
from fkstudy.text.registry import BowParams, GloveParams, TfidfParams, Word2VecParams
from fkstudy.train import fusion, heads, recipes
from tests.factories import head

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["Baby Care", "Computers", "Watches"]
WORDS = {"Baby Care": "baby diaper soft cotton infant romper", "Computers": "laptop usb keyboard mouse router ssd",
         "Watches": "analog watch strap dial wrist chronograph"}
TEXT = dict(field="both", input="raw")  # which column the docs came from: not read by the functions
VEC = BowParams(**TEXT, min_df=1, max_df=1.0, ngram_max=2, max_features=10_000)
W2V = Word2VecParams(**TEXT, vector_size=16, window=3, min_count=1, epochs=5, sg=1, pooling="mean")


LOGREG = head(type="logreg", scale="standard", C=[0.1, 1.0], max_iter=300)
MLP = head(type="mlp", scale="standard", C=[1.0], hidden=[8], alpha=1e-3, lr=1e-2, batch_size=32, max_iter=15,
           patience=3)
MARK = 1e6  # value carried by every test row of the numeric features


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with threadpool_limits(limits=1):
        yield


def _split(n: int, seed: int = 0) -> np.ndarray:
    s = np.array(["train"] * (n * 6 // 10) + ["val"] * (n * 2 // 10))
    s = np.concatenate([s, ["test"] * (n - len(s))])
    np.random.default_rng(seed).shuffle(s)
    return s


@pytest.fixture(scope="module")
def corpus():
    """90 products; each test document carries its own test-only words, each val document a val-only word."""
    rng = np.random.default_rng(1)
    n = 90
    split, y = _split(n), np.array(CLASSES * (n // 3))
    docs = []
    for i in range(n):
        words = list(rng.choice(WORDS[y[i]].split(), 4)) + list(rng.choice(sum((w.split() for w in WORDS.values()), []), 1))
        if split[i] == "test":
            words += [f"zqtest{i}", "zqtestonly"]
        elif split[i] == "val":
            words += [f"zqval{i}"]
        docs.append(" ".join(words))
    ids = np.array([f"p{i:03d}" for i in range(n)])
    return {"docs": docs, "split": split, "y": y, "ids": ids,
            "catalog": pd.DataFrame({"id": ids, "category": y, "split": split})}


def _ctx(c, seed: int = 0) -> Context:
    """The context a text stage builds: every row's id, learned steps fitted on the train ids."""
    return Context(ids=list(c["ids"]), fit_ids=frozenset(c["ids"][c["split"] == "train"]), seed=seed)


def _other_test_docs(c) -> list[str]:
    """The corpus with every test document replaced by unrelated text."""
    return [d if s != "test" else "xylophone quasar " * (i % 3 + 1) for i, (d, s) in enumerate(zip(c["docs"], c["split"]))]


def _test_only_tokens(c) -> set[str]:
    seen = {w for d, s in zip(c["docs"], c["split"]) if s != "test" for w in d.split()}
    return {w for d, s in zip(c["docs"], c["split"]) if s == "test" for w in d.split()} - seen


# ------------------------------------------------------------------------------ text: vocabularies
def test_bow_vocabulary_is_fitted_on_train_ids_only(corpus):
    X, info = F.bow(corpus["docs"], VEC, _ctx(corpus))
    vocab = {t for term in info["vocabulary"] for t in term.split()}
    assert not vocab & _test_only_tokens(corpus) and not any(t.startswith(("zqtest", "zqval")) for t in vocab)
    X2, info2 = F.bow(_other_test_docs(corpus), VEC, _ctx(corpus))
    assert info2["vocabulary"] == info["vocabulary"]
    np.testing.assert_array_equal(X2[corpus["split"] != "test"], X[corpus["split"] != "test"])


def test_tfidf_idf_is_fitted_on_train_ids_only(corpus):
    train = corpus["split"] == "train"
    assert np.array_equal(_ctx(corpus).fit_mask(), train)
    p = TfidfParams(**VEC.model_dump(), sublinear_tf=True)
    X, info = F.tfidf(corpus["docs"], p, _ctx(corpus))
    assert not set(info["vocabulary"]) & _test_only_tokens(corpus)
    # exactly a vectorizer that was only ever shown the train documents
    ref = TfidfVectorizer(sublinear_tf=True, **F._vectorizer_kwargs(p)).fit([d for d, m in zip(corpus["docs"], train) if m])
    np.testing.assert_allclose(X, ref.transform(corpus["docs"]).toarray(), rtol=1e-6)
    X2, _ = F.tfidf(_other_test_docs(corpus), p, _ctx(corpus))
    np.testing.assert_array_equal(X2[~(corpus["split"] == "test")], X[~(corpus["split"] == "test")])


@pytest.mark.parametrize("pooling", ["mean", "tfidf"])
def test_word2vec_and_its_pooling_idf_are_fitted_on_train_ids_only(corpus, pooling):
    train = corpus["split"] == "train"
    p = W2V.model_copy(update={"pooling": pooling})
    X, info = F.word2vec(corpus["docs"], p, _ctx(corpus, seed=3))
    wv = info["_model"].wv
    assert not set(wv.index_to_key) & _test_only_tokens(corpus)
    assert not any(w.startswith(("zqtest", "zqval")) for w in wv.index_to_key)
    ref = F.train_word2vec([d.split() for d, m in zip(corpus["docs"], train) if m], p, seed=3)
    np.testing.assert_array_equal(wv.vectors, ref.wv.vectors)  # the same model as one shown train docs only
    X2, _ = F.word2vec(_other_test_docs(corpus), p, _ctx(corpus, seed=3))
    keep = corpus["split"] != "test"
    np.testing.assert_array_equal(X2[keep], X[keep])  # idf weights (tfidf pooling) did not move either


def test_glove_idf_pooling_is_fitted_on_train_ids_only(corpus, monkeypatch):
    """GloVe vectors are pretrained (nothing learnt); its idf-weighted pooling is, from train rows."""
    from gensim.models import KeyedVectors

    words = sorted({w for d in corpus["docs"] for w in d.split()} | {"xylophone", "quasar"})
    kv = KeyedVectors(vector_size=8)
    kv.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 8)).astype(np.float32))
    monkeypatch.setattr(F, "load_glove", lambda: kv)
    train, keep = corpus["split"] == "train", corpus["split"] != "test"
    p = GloveParams(**TEXT, pooling="tfidf")
    X, _ = F.glove(corpus["docs"], p, _ctx(corpus))
    X2, _ = F.glove(_other_test_docs(corpus), p, _ctx(corpus))
    np.testing.assert_array_equal(X2[keep], X[keep])
    idf = F._idf_weights([d.split() for d in corpus["docs"]], train)
    assert not set(idf) & _test_only_tokens(corpus)


@pytest.mark.slow
def test_text_features_stage_fits_on_the_catalog_train_split(tmp_path, corpus):
    """The stage itself, on a generated text table: fit_mask comes from the `split` column."""
    # the stage reads only the params its dvc.yaml entry declares: the real dvc.yaml and params.yaml
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = params["text_features"]["bow"]
    assert params["text_features"]["fit_on"] == "train"  # the study's setting
    col = f"{p['input']}_{p['field']}"
    text = pd.DataFrame({"id": corpus["ids"], "split": corpus["split"], "category": corpus["y"], col: corpus["docs"]})
    (tmp_path / "data/interim").mkdir(parents=True)
    text.to_parquet(tmp_path / "data/interim/text.parquet", index=False)
    env = {**os.environ, "MPLBACKEND": "Agg", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    proc = subprocess.run([sys.executable, str(ROOT / "stages/text_features.py"), "bow"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    X, ids, meta = files.load_features(tmp_path / paths.features("text", "bow"), supervised=True)
    assert meta["fit_on"] == "train" and list(ids) == list(corpus["ids"])
    expected, info = F.bow(corpus["docs"], BowParams.model_validate(p), _ctx(corpus))
    assert meta["vocab_size"] == info["vocab_size"]
    np.testing.assert_array_equal(X, expected)


def test_supervised_stages_refuse_features_fitted_on_all_rows(tmp_path):
    """`text_features.fit_on: all` (allowed for clustering) would leak into a classifier's test score:
    text_classifier / fusion / multiseed load features with supervised=True, which refuses them."""
    X, ids = np.ones((3, 2), np.float32), ["a", "b", "c"]
    files.save_features(tmp_path / "all.npz", X, ids, {"method": "tfidf", "fit_on": "all"})
    files.save_features(tmp_path / "train.npz", X, ids, {"method": "tfidf", "fit_on": "train"})
    files.save_features(tmp_path / "image.npz", X, ids, {"extractor": "vgg16"})  # nothing fitted on rows
    files.load_features(tmp_path / "all.npz")  # clustering may use them
    with pytest.raises(files.FeatureFileError, match=r"all.npz: fitted on 'all' rows.*leak.*fit_on: train"):
        files.load_features(tmp_path / "all.npz", supervised=True)
    files.load_features(tmp_path / "train.npz", supervised=True)
    files.load_features(tmp_path / "image.npz", supervised=True)
    for stage in ("text_classifier", "fusion", "multiseed"):
        assert "supervised=True" in (ROOT / f"stages/{stage}.py").read_text(), stage


# ------------------------------------------------------------------------------ images: BoVW
def test_bovw_codebook_and_idf_are_fitted_on_train_ids_only(monkeypatch):
    from fkstudy.image import classical as C

    rng = np.random.default_rng(0)
    n = 10
    images = np.kron(rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8), np.ones((1, 8, 8, 1), np.uint8))
    ids = [f"i{k}" for k in range(n)]
    train = {f"i{k}" for k in range(6)}
    fitted = {}
    real_idf = C.fit_idf

    def spy_idf(counts):
        fitted["idf_rows"] = len(counts)
        return real_idf(counts)

    monkeypatch.setattr(C, "fit_idf", spy_idf)
    args = dict(kind="orb", k=6, max_keypoints=80, max_descriptors=5000, normalize="l1", tfidf=True, seed=0)
    X, info = C.bovw_features(images, ids, train, **args)
    assert info["codebook_fit_images"] == 6 and fitted["idf_rows"] == 6
    other = images.copy()
    other[6:] = np.kron(rng.integers(0, 256, (n - 6, 24, 24, 3), dtype=np.uint8), np.ones((1, 4, 4, 1), np.uint8))
    X2, _ = C.bovw_features(other, ids, train, **args)
    np.testing.assert_array_equal(X2[:6], X[:6])  # same codebook, same idf: train rows unchanged
    assert not np.array_equal(X2[6:], X[6:])      # (the test rows themselves did change)


# ------------------------------------------------------------------------------ heads on features
@pytest.fixture(scope="module")
def world():
    """Numeric features for 150 products; every test row carries MARK in its first column."""
    from sklearn.datasets import make_classification

    Xf, yi = make_classification(n_samples=150, n_features=10, n_informative=6, n_redundant=0, n_classes=3,
                                 n_clusters_per_class=1, class_sep=2.0, random_state=0)
    ids = np.array([f"p{i:03d}" for i in range(150)])
    split = _split(150, seed=2)
    cat = pd.DataFrame({"id": ids, "category": np.array(CLASSES)[yi], "split": split})
    X = Xf.astype(np.float32)
    X[split == "test", 0] = MARK
    return {"X": X, "ids": ids, "catalog": cat, "test": split == "test"}


def _spy_fit(monkeypatch, calls: list):
    real = heads.fit_head

    def spy(X_train, y_train, X_val, y_val, cfg, seed):
        calls.append((len(X_train), len(X_val)))
        assert np.abs(np.asarray(X_train)).max() < MARK / 10, "a test row entered a fit (train block)"
        assert np.abs(np.asarray(X_val)).max() < MARK / 10, "a test row entered a fit (validation block)"
        return real(X_train, y_train, X_val, y_val, cfg, seed)

    monkeypatch.setattr(heads, "fit_head", spy)


def test_scaler_is_fitted_on_train_rows_only(world):
    d = split_by_id(world["X"], world["ids"], world["catalog"])
    f = heads.fit_head(d.X_train, d.y_train, d.X_val, d.y_val, LOGREG, 0)
    scaler = f.model.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, d.X_train.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(scaler.scale_, d.X_train.astype(np.float64).std(0), rtol=1e-12)
    assert scaler.mean_[0] < 10  # a test row (first column = 1e6) would have dragged it up


def test_concat_block_standardisation_uses_train_rows_only(world):
    """The fusion concat head standardises each block (text | image) with statistics of the train rows
    only: they match the train rows' mean / std, never move the marker, and replacing every test row
    leaves them (and the head) unchanged."""
    cat, X, ids = world["catalog"], world["X"], world["ids"]
    T, I = X[:, :5], X[:, 5:]
    kw = dict(modes=["concat"], n_repeats=0, select_by="val")
    fit = fusion.fit_fusion(T, ids, I, ids, cat, LOGREG, 0, **kw)
    blocks = fit.heads["concat"].model.named_steps["blocks"]
    train = np.isin(ids, fit.ids_train)
    assert set(fit.ids_train) == set(ids[cat["split"] == "train"])
    for name, B in (("text", T), ("image", I)):
        scaler = blocks.named_transformers_[name]
        np.testing.assert_allclose(scaler.mean_, B[train].astype(np.float64).mean(0), rtol=1e-6)
        np.testing.assert_allclose(scaler.scale_, B[train].astype(np.float64).std(0), rtol=1e-6)
    assert blocks.named_transformers_["text"].mean_[0] < 10  # the test marker never entered the statistics
    Z = blocks.transform(fusion_rules.concat_features(T[train], I[train]))
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-9)
    X_other = X.copy()
    X_other[world["test"]] = -7.0
    other = fusion.fit_fusion(X_other[:, :5], ids, X_other[:, 5:], ids, cat, LOGREG, 0, **kw)
    ob = other.heads["concat"].model.named_steps["blocks"]
    for name in ("text", "image"):
        np.testing.assert_array_equal(ob.named_transformers_[name].mean_, blocks.named_transformers_[name].mean_)
        np.testing.assert_array_equal(ob.named_transformers_[name].scale_, blocks.named_transformers_[name].scale_)
    np.testing.assert_array_equal(ob.transform(fusion_rules.concat_features(T[train], I[train])), Z)


def test_text_classifier_never_fits_on_test_ids(world, monkeypatch):
    calls = []
    _spy_fit(monkeypatch, calls)
    r = recipes.text_classifier(world["X"], world["ids"], world["catalog"], LOGREG, 0, n_splits=3, n_repeats=1)
    assert len(calls) == 1 + 3  # the head, then the 3 CV folds on train+val
    assert set(r["confusion"]["id"]) == set(world["ids"][world["test"]])
    X_other = world["X"].copy()
    X_other[world["test"]] = np.random.default_rng(5).normal(size=X_other[world["test"]].shape)
    r2 = recipes.text_classifier(X_other, world["ids"], world["catalog"], LOGREG, 0, n_splits=3, n_repeats=1)
    assert r2["fitted"].chosen == r["fitted"].chosen and r2["cv"] == r["cv"]  # C and CV did not see test rows
    np.testing.assert_array_equal(r2["fitted"].model.named_steps["clf"].coef_, r["fitted"].model.named_steps["clf"].coef_)


def test_multiseed_heads_never_fit_on_test_rows(world, monkeypatch):
    calls = []
    _spy_fit(monkeypatch, calls)
    d = split_by_id(world["X"], world["ids"], world["catalog"])
    assert not set(d.ids_train) & set(d.ids_test) and set(d.ids_test) == set(world["ids"][world["test"]])
    res = recipes.multiseed(d, MLP, 0, 2, CLASSES)
    assert len(calls) == 2 and len(res["per_seed"]) == 2


@pytest.mark.parametrize("mode", fusion_rules.MODES)
def test_fusion_choices_do_not_depend_on_test_rows(world, monkeypatch, mode):
    """Complements test_heads' spy test: C per modality and the pooling weight are chosen on val
    (val-only protocol), so replacing every test row leaves them, and the fitted heads, unchanged."""
    cat, X, ids = world["catalog"], world["X"], world["ids"]
    T, I = X[:, :6], X[:, 4:]
    T2, I2 = T.copy(), I.copy()
    T2[world["test"]], I2[world["test"]] = 3.0, -3.0
    calls = []
    _spy_fit(monkeypatch, calls)  # the marker (first column of T) never reaches a fit
    kw = dict(modes=[mode], n_repeats=0, select_by="val")
    a = fusion.fit_fusion(T, ids, I, ids, cat, LOGREG, 0, **kw)
    b = fusion.fit_fusion(T2, ids, I2, ids, cat, LOGREG, 0, **kw)
    assert len(calls) == 2 * (3 if mode == "concat" else 2)
    assert a.selected == b.selected
    assert fusion.select(a.candidates, "val", mode) == fusion.select(b.candidates, "val", mode)
    pd.testing.assert_frame_equal(a.candidates, b.candidates)
    assert set(a.heads) == ({"text", "image", "concat"} if mode == "concat" else {"text", "image"})
    for m in a.heads:  # with concat: one head on block-standardised [text | image], scaler stats from train rows
        assert a.heads[m].chosen == b.heads[m].chosen
        np.testing.assert_array_equal(a.heads[m].model.named_steps["clf"].coef_,
                                      b.heads[m].model.named_steps["clf"].coef_)


# ------------------------------------------------------------------------------ cluster: by design
def test_cluster_fits_on_all_rows_by_design_and_never_sees_labels():
    """Not a leak, on purpose: `cluster` is the study's unsupervised evaluation (as in the seed
    study). Normalisation, PCA, t-SNE and KMeans are fitted on every row *without labels*; the
    labels only score the clusters (ARI, silhouette of true classes) and no supervised model or
    test-set metric is built from these fits. Shown here: shuffling the labels changes no
    embedding and no cluster assignment, only the scores."""
    from fkstudy.evaluate import cluster as cl
    from fkstudy.evaluate.params import ClusterParams

    p = ClusterParams.model_validate({**yaml.safe_load((ROOT / "params.yaml").read_text())["cluster"], "n_seeds": 2,
                                      "pca_components": 5, "tsne_perplexity": 10.0, "kmeans_n_init": 2})
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(CLASSES), 30)
    X = (rng.normal(size=(90, 12)) + np.repeat(np.eye(3, 12) * 4, 30, axis=0)).astype(np.float32)
    a = cl.evaluate(X, labels, p, seed=0)
    b = cl.evaluate(X, rng.permutation(labels), p, seed=0)
    assert [d.reduction for d in a] == [d.reduction for d in b] and len(a) == 2 * len(p.reductions)
    for da, db in zip(a, b):
        np.testing.assert_array_equal(da.embedding, db.embedding)
        np.testing.assert_array_equal(da.clusters, db.clusters)
    assert max(d.ari for d in a) > 0.5 > max(d.ari for d in b)
