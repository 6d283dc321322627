"""The fusion heads: the text head, the image head and the concat head (one head on [text | image]), fitted on
one set of rows with another set picking C / stopping the MLP. Every fit goes through `heads.fit_head`
(tests spy on it). Pure functions."""
from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..fusion_rules import concat_features
from . import heads


def fit_concat(T_train, I_train, y_train, T_val, I_val, y_val, cfg: heads.HeadParams, seed: int) -> heads.Fitted:
    """One head on [text | image]: each block standardised with train statistics and divided by
    sqrt(its width), so a 1280-d block does not drown a 384-d one; the pipeline takes the raw
    concatenation (`concat_features`)."""
    dt, di = np.shape(T_train)[1], np.shape(I_train)[1]
    blocks = ColumnTransformer(
        [("text", StandardScaler(), list(range(dt))), ("image", StandardScaler(), list(range(dt, dt + di)))],
        transformer_weights={"text": 1.0 / np.sqrt(dt), "image": 1.0 / np.sqrt(di)})
    Z_train = blocks.fit_transform(concat_features(T_train, I_train))
    Z_val = blocks.transform(concat_features(T_val, I_val))
    f = heads.fit_head(Z_train, y_train, Z_val, y_val, cfg.model_copy(update={"scale": "none"}), seed)
    return heads.Fitted(Pipeline([("blocks", blocks), *f.model.steps]), f.curve, f.chosen)


def fit_heads(T_a, I_a, y_a, T_b, I_b, y_b, cfgs: dict, seed: int) -> dict:
    """{head name: heads.Fitted} for each of `cfgs` ("text" | "image" | "concat" -> its HeadParams), fitted on
    rows a (T_a, I_a, y_a), rows b choosing C / stopping the MLP."""
    out = {}
    for name, cfg in cfgs.items():
        if name == "concat":
            out[name] = fit_concat(T_a, I_a, y_a, T_b, I_b, y_b, cfg, seed)
        else:
            A, B = (T_a, T_b) if name == "text" else (I_a, I_b)
            out[name] = heads.fit_head(A, y_a, B, y_b, cfg, seed)
    return out
