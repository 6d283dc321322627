"""Text features: leak-free fitting (ctx.fit_ids), pooling, Word2Vec determinism, GloVe, MiniLM, USE."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fkstudy.registry import Context
from fkstudy.text import encoders as E
from fkstudy.text import features as F
from fkstudy.text.registry import (BertParams, BowParams, GloveParams, TfidfParams, UseParams,
                                   Word2VecParams)

VEC = dict(field="name", input="lemmas", min_df=1, max_df=1.0, ngram_max=1, max_features=100)
BOW = BowParams(**VEC)
W2V = Word2VecParams(field="name", input="lemmas", vector_size=16, window=2, min_count=1, epochs=20, sg=1,
                     pooling="mean")


def tfidf_params(sublinear_tf: bool) -> TfidfParams:
    return TfidfParams(**VEC, sublinear_tf=sublinear_tf)


def ctx(n: int, fit_mask=None, seed: int = 0) -> Context:
    """Rows "0".."n-1"; the learned steps may see the rows where fit_mask is true (None = all)."""
    ids = [str(i) for i in range(n)]
    fit_ids = None if fit_mask is None else frozenset(i for i, m in zip(ids, fit_mask) if m)
    return Context(ids=ids, fit_ids=fit_ids, seed=seed)


def test_bow_vocabulary_from_fit_rows_only():
    docs = ["red watch", "blue watch watch", "green towel"]
    X, info = F.bow(docs, BOW, ctx(3, [True, True, False]))
    assert info["vocabulary"] == ["blue", "red", "watch"] and info["vocab_size"] == 3
    assert X.dtype == np.float32 and X.shape == (3, 3)
    np.testing.assert_array_equal(X, [[0, 1, 1], [1, 0, 2], [0, 0, 0]])  # 'green towel' is unseen
    X_all, info_all = F.bow(docs, BOW, ctx(3))
    assert "towel" in info_all["vocabulary"] and X_all.shape == (3, 5)


def test_tfidf_idf_from_fit_rows_only():
    docs = ["red watch", "blue watch", "red", "red", "red green"]
    fit = np.array([True, True, False, False, False])
    X, info = F.tfidf(docs, tfidf_params(True), ctx(5, fit))
    assert info["vocabulary"] == ["blue", "red", "watch"]  # 'green' only in a non-fit row
    # smooth idf over the 2 fit rows: ln((1+n)/(1+df)) + 1
    idf_red, idf_watch = np.log(3 / 2) + 1, np.log(3 / 3) + 1
    row0 = np.array([0, idf_red, idf_watch]) / np.hypot(idf_red, idf_watch)
    np.testing.assert_allclose(X[0], row0, rtol=1e-6)
    np.testing.assert_allclose(X[2], [0, 1, 0])
    np.testing.assert_allclose(X[4], [0, 1, 0])
    X_all, _ = F.tfidf(docs, tfidf_params(True), ctx(5))  # fitted on everything: 'red' is common, idf drops
    assert X_all.shape[1] == 4 and not np.allclose(X_all[0, [1, 3]], X[0, [1, 2]])


def test_tfidf_sublinear_tf():
    docs = ["watch watch watch strap", "strap"]
    lin, _ = F.tfidf(docs, tfidf_params(False), ctx(2))
    sub, _ = F.tfidf(docs, tfidf_params(True), ctx(2))
    # columns: strap, watch; idf(strap)=1, idf(watch)=ln(3/2)+1
    idf_w = np.log(3 / 2) + 1
    for X, tf in ((lin, 3.0), (sub, 1 + np.log(3))):
        v = np.array([1.0, tf * idf_w])
        np.testing.assert_allclose(X[0], v / np.linalg.norm(v), rtol=1e-6)


def test_fit_mask_length_is_checked():
    with pytest.raises(ValueError, match="fit_mask has 2 entries for 3 documents"):
        F.bow(["a", "b", "c"], BOW, ctx(2, [True, False]))  # ids of 2 rows for 3 documents


def test_pool_word_vectors_mean_tfidf_and_unknown():
    lookup = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    docs = [["a", "b"], ["a", "zzz"], ["zzz"], [], ["a", "a", "b"]]
    X, empty = F.pool_word_vectors(docs, lookup, 2)
    assert X.dtype == np.float32 and empty == 2
    np.testing.assert_allclose(X, [[0.5, 0.5], [1, 0], [0, 0], [0, 0], [2 / 3, 1 / 3]])
    Xt, _ = F.pool_word_vectors(docs, lookup, 2, "tfidf", idf={"a": 3.0, "b": 1.0})
    np.testing.assert_allclose(Xt[0], [0.75, 0.25])
    np.testing.assert_allclose(Xt[4], [6 / 7, 1 / 7], rtol=1e-6)


def test_idf_from_fit_rows():
    toks = [["a", "b"], ["a"], ["c", "c"]]
    idf = F._idf_weights(toks, [True, True, False])
    assert set(idf) == {"a", "b"}
    assert idf["a"] == pytest.approx(np.log(3 / 3) + 1) and idf["b"] == pytest.approx(np.log(3 / 2) + 1)


DOCS = ["red analog watch strap", "blue digital watch dial", "soft cotton bath towel", "cotton hand towel set",
        "ceramic coffee mug", "steel coffee mug lid", "watch strap leather", "zebra unicorn"]
FIT = np.array([True] * 7 + [False])


def test_word2vec_deterministic_and_fit_rows_only():
    c1 = ctx(8, FIT, seed=7)
    X1, info1 = F.word2vec(DOCS, W2V, c1)
    X2, _ = F.word2vec(DOCS, W2V, ctx(8, FIT, seed=7))
    np.testing.assert_array_equal(X1, X2)
    assert X1.dtype == np.float32 and X1.shape == (8, 16)
    wv = info1["_model"].wv
    assert "zebra" not in wv and "unicorn" not in wv and "watch" in wv
    assert info1["vocab_size"] == len({w for d, m in zip(DOCS, FIT) if m for w in d.split()})
    assert info1["docs_without_known_words"] == 1 and not X1[7].any() and X1[:7].any(axis=1).all()
    np.testing.assert_allclose(X1[0], np.mean([wv[w] for w in DOCS[0].split()], axis=0), rtol=1e-5)
    X3, _ = F.word2vec(DOCS, W2V, ctx(8, FIT, seed=8))
    assert not np.allclose(X1, X3)
    # training time goes to ctx.timings, never into info (feature-file meta, kept byte-identical)
    assert c1.timings["train_seconds"] >= 0 and "train_seconds" not in info1


def test_word2vec_tfidf_pooling():
    X, info = F.word2vec(DOCS, W2V.model_copy(update={"pooling": "tfidf"}), ctx(8, FIT, seed=7))
    Xm, _ = F.word2vec(DOCS, W2V, ctx(8, FIT, seed=7))
    wv, words = info["_model"].wv, DOCS[0].split()
    idf = F._idf_weights([d.split() for d in DOCS], FIT)
    w = np.array([idf[t] for t in words])
    np.testing.assert_allclose(X[0], (np.stack([wv[t] for t in words]) * w[:, None]).sum(0) / w.sum(), rtol=1e-5)
    assert not np.allclose(X[0], Xm[0])  # 'watch'/'strap' are commoner than 'red'/'analog': weighted less


@pytest.fixture(scope="module")
def glove_kv():
    return F.load_glove()


def test_glove(glove_kv, monkeypatch):
    assert glove_kv.vector_size == 50 and glove_kv["watch"].shape == (50,) and glove_kv["watch"].dtype == np.float32
    assert glove_kv.similarity("watch", "clock") > glove_kv.similarity("watch", "towel")
    monkeypatch.setattr(F, "load_glove", lambda: glove_kv)
    X, info = F.glove(["watch strap", "qqqzzzx"], GloveParams(field="name", input="lemmas", pooling="mean"), ctx(2))
    assert X.shape == (2, 50) and X.dtype == np.float32 and info["docs_without_known_words"] == 1
    np.testing.assert_allclose(X[0], (glove_kv["watch"] + glove_kv["strap"]) / 2, rtol=1e-6)
    assert not X[1].any()


TEXTS = ["Analog wrist watch for men", "Soft cotton bath towel", "Stainless steel wrist watch with date"]
BERT = BertParams(field="both", input="raw", model_dir="", max_length=64, batch_size=3,
                  precision="float32")


@pytest.fixture(scope="module")
def bert_runs():
    X, info = E.bert(TEXTS, BERT, ctx(3))
    X_again, _ = E.bert(TEXTS, BERT, ctx(3))
    X_bs1, _ = E.bert(TEXTS, BERT.model_copy(update={"batch_size": 1}), ctx(3))
    return X, X_again, X_bs1, info


@pytest.mark.slow
def test_bert_shape_determinism_batch_invariance(bert_runs):
    X, X_again, X_bs1, info = bert_runs
    assert X.shape == (3, 384) and X.dtype == np.float32 and np.isfinite(X).all()
    np.testing.assert_array_equal(X, X_again)
    np.testing.assert_allclose(X, X_bs1, atol=1e-5)
    assert info["weights"] == "pretrained" and info["architecture"] == "bert"
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    sim = Xn @ Xn.T
    assert sim[0, 2] > sim[0, 1] + 0.1  # real weights: the two watches are closer than watch/towel


def test_bert_model_dir_must_hold_a_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        E.bert_model_dir(str(tmp_path))


@pytest.mark.slow
def test_use():
    X, info = E.use(TEXTS, UseParams(field="name", input="raw", tfhub_handle="", batch_size=2), ctx(3))
    assert X.shape == (3, 512) and X.dtype == np.float32 and np.isfinite(X).all()
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    sim = Xn @ Xn.T
    assert sim[0, 2] > sim[0, 1] + 0.1
    assert info["weights"] == "pretrained"


@pytest.mark.slow
def test_length_sorted_batches_keep_each_text_on_its_row():
    """encode_mean_pooled batches texts of similar length together: every row is still its own text's embedding
    (as encoded alone, up to float noise), in the input order, and padding no longer differs between the rows
    of a batch that mixes a short and a long text."""
    tokenizer, model = E.load_transformer(E.bert_model_dir(""))
    docs = ["watch", "Soft cotton bath towel with a long description of its weave and its colours and size",
            "Analog wrist watch for men", "towel", "Stainless steel wrist watch with date and a leather strap"]
    X = E.encode_mean_pooled(tokenizer, model, docs, batch_size=2, max_length=64)
    alone = np.concatenate([E.encode_mean_pooled(tokenizer, model, [d], 1, 64) for d in docs])
    np.testing.assert_allclose(X, alone, atol=2e-5)
    lengths = [len(t) for t in tokenizer(docs)["input_ids"]]
    assert np.argsort(lengths, kind="stable").tolist() == [0, 3, 2, 4, 1]   # the batches: [0, 3], [2, 4], [1]
    assert E.encode_mean_pooled(tokenizer, model, [], 2, 64).shape == (0, 384)


@pytest.mark.slow
def test_text_terms_stage_reads_the_vocabulary_from_the_feature_file(tmp_path):
    """text_terms@bow plots the heaviest terms per category from the feature file's own vocabulary; a feature file
    whose columns are not terms is refused on one line."""
    import os
    import subprocess
    import sys

    import pandas as pd

    from fkstudy import files

    ROOT = Path(__file__).resolve().parents[2]
    for rel in ("dvc.yaml", "params.yaml"):
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    ids = [f"p{i:02d}" for i in range(30)]
    cats = ["A", "B", "C"] * 10
    (tmp_path / "data/interim").mkdir(parents=True)
    pd.DataFrame({"id": ids, "name": ids, "description": "d", "category": cats, "image": [f"{i}.jpg" for i in ids],
                  "image_status": "ok", "split": (["train"] * 3 + ["val", "test"]) * 6}
                 ).to_parquet(tmp_path / "data/interim/catalog.parquet", index=False)
    vocab = ["alpha", "beta", "gamma", "delta"]
    X = np.array([[3, 0, 0, 1] if c == "A" else [0, 3, 0, 1] if c == "B" else [0, 0, 3, 1] for c in cats], np.float32)
    files.save_features(tmp_path / "data/features/text_bow.npz", X, ids, {"method": "bow", "vocabulary": vocab})
    env = {**os.environ, "MPLBACKEND": "Agg"}
    run = [sys.executable, str(ROOT / "stages/text_terms.py"), "bow"]
    proc = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "plots/text_features/bow_top_terms.csv")
    assert table[table["rank"] == 1].set_index("category")["term"].to_dict() == {"A": "alpha", "B": "beta", "C": "gamma"}
    assert (tmp_path / "plots/text_features/bow_wordclouds.png").stat().st_size > 0
    files.save_features(tmp_path / "data/features/text_bow.npz", X, ids, {"method": "bow"})
    proc = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: data/features/text_bow.npz: no vocabulary")
