"""Stage text_features@<method>: cleaned text -> data/features/text/<method>.npz (+ metrics, plots)."""
import _bootstrap  # noqa: F401
import sys

import numpy as np
import pandas as pd

from fkstudy import io, tracking
from fkstudy.plots import text as tplots
from fkstudy.runtime import log, start_stage, timed, write_timings
from fkstudy.text import features as tf

METHODS = ("bow", "tfidf", "word2vec", "glove", "bert", "use")
method = sys.argv[1] if len(sys.argv) == 2 else ""
if method not in METHODS:
    sys.exit(f"usage: text_features.py <method>, method in {METHODS}; got {sys.argv[1:]}")

params = start_stage(f"text_features@{method}")
p = params["text_features"][method]
text = pd.read_parquet("data/interim/text.parquet")
docs = text[f'{p["input"]}_{p["field"]}'].fillna("").tolist()
fit_mask = (text["split"] == "train").to_numpy() if params["text_features"]["fit_on"] == "train" else None
n_jobs, seed = params["n_jobs"], params["seed"]

timing: dict = {}
with timed(method, timing, "seconds"):
    if method == "bow":
        X, info = tf.bow(docs, p, fit_mask)
    elif method == "tfidf":
        X, info = tf.tfidf(docs, p, fit_mask)
    elif method == "word2vec":
        X, info = tf.word2vec(docs, p, fit_mask, seed, timing)
    elif method == "glove":
        X, info = tf.glove(docs, p, fit_mask)
    elif method == "bert":
        X, info = tf.bert(docs, p, n_jobs)
    else:
        X, info = tf.use(docs, p, n_jobs)

vocabulary = info.pop("vocabulary", None)
w2v_model = info.pop("_model", None)  # the trained gensim model, not saved in meta
info.setdefault("weights", f"fitted on {params['text_features']['fit_on']}")
meta = {"method": method, "modality": "text", "params": p, "fit_on": params["text_features"]["fit_on"], **info}
io.save_features(f"data/features/text/{method}.npz", X, text["id"], meta)
metrics = {"dim": int(X.shape[1]), "n": int(X.shape[0]),
           **{k: v for k, v in info.items() if isinstance(v, (int, float, str))}}
io.write_json(f"metrics/text_features/{method}.json", metrics)
write_timings("text_features", {"n": int(X.shape[0]), **timing}, method)

if w2v_model is not None:  # the one model trained in the text half: an MLflow run
    import mlflow

    with tracking.run(params["mlflow"]["experiment"], "text_features@word2vec", "word2vec",
                      {**p, "seed": seed, "fit_on": params["text_features"]["fit_on"]},
                      tags={"modality": "text", "method": "word2vec"}):
        mlflow.log_metrics({"vocab_size": info["vocab_size"], "train_seconds": timing["train_seconds"],
                            "docs_without_known_words": info["docs_without_known_words"]})

if vocabulary is not None:
    labels = text["category"].to_numpy()
    table = tplots.top_terms(X, vocabulary, labels)
    io.write_csv(f"plots/text_features/{method}_top_terms.csv", table)
    io.save_figure(tplots.top_terms_figure(table, f"Top {method.upper()} terms per category"),
                   f"plots/text_features/{method}_top_terms.png")
    io.save_figure(tplots.word_clouds(X, vocabulary, labels, f"{method.upper()} word clouds", seed),
                   f"plots/text_features/{method}_wordclouds.png")
log.info("%s: X %s", method, X.shape)
