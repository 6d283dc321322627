"""The name-only head: what the served model answers for a product given by its name alone (no description,
no photo), e.g. a seller typing a title or a catalogue from another source.

Its features are the fusion text set's encoder on the name field (`fusion.name_set`, e.g. mpnet_name): the
predictor encodes a name-only product with that one encoder, so the served features are the trained ones
(`check_set`). Fitted like the fusion heads (train fitted, val picks C, repeated stratified CV on train+val
for its scores and out-of-fold probabilities), then refitted on train+val with C frozen. Never holds a test
row (LeakError guards); `evaluate` predicts the test names once, with the full-text head beside it.
Pure functions (no file or MLflow I/O).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.splits import assert_no_test, common_ids
from ..evaluate.metrics import scores
from ..files import align
from ..fusion_rules import expected_params
from ..labels import best_target, fit_labels, proba_top, top_classes
from . import heads
from .cv import fixed, repeated_cv


@dataclass
class NameFit:
    """The head a product given by its name alone gets (no description, no photo): C picked on val by a fit on
    the train rows' name-only embeddings, cross-validated on train+val with that C for its scores and the
    out-of-fold probabilities its calibration is fitted on, then refitted on train+val with that C (the served
    head: a title carries little, so every labelled non-test product counts)."""
    head: heads.Fitted         # the served head, fitted on train+val; `chosen` from the train-only fit
    folds: pd.DataFrame        # fold, model ("name"), accuracy, macro_f1, log_loss (train+val CV)
    oof: np.ndarray            # out-of-fold probabilities of train+val (first CV repeat), top-level class order
    y: np.ndarray              # the train+val top-level labels in `oof`'s row order
    ids_train: np.ndarray
    ids_val: np.ndarray
    target: str = "category"   # the labels the head is fitted on (fkstudy.labels), chosen by CV accuracy
    cv_by_target: dict | None = None   # target -> its CV accuracy on train+val


def check_set(text_set: str, t_meta: dict, name_set: str, n_meta: dict) -> dict:
    """The name head's features must be what the served model makes of a name-only product: the text set's
    encoder, same settings, on the name field (the predictor runs one text encoder). Returns {"set", "params"}
    for the bundle; a mismatch is a ValueError saying which setting to change."""
    from ..text.registry import TEXT

    want = expected_params(t_meta.get("params", {}))
    got = n_meta.get("params", {})
    if TEXT[name_set].function != TEXT[text_set].function or got != want:
        diff = {k: (got.get(k), want.get(k)) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)}
        raise ValueError(f"fusion.name_set={name_set!r} must be fusion.text_set={text_set!r}'s encoder on the name "
                         f"alone (the served model encodes a name-only product with the text set's encoder): "
                         f"set text_features.{name_set} to text_features.{text_set} with field: name "
                         f"(differs: {diff or TEXT[name_set].function})")
    return {"set": name_set, "params": got}


def fit(name_X, name_ids, catalog: pd.DataFrame, cfg: heads.HeadParams, seed: int, *, n_splits: int = 5,
        n_repeats: int = 2, targets=("category",)) -> NameFit:
    """Like `fusion.fit_fusion` for one head on name-only features: train rows fitted, val picks C, repeated
    stratified CV over train+val with C frozen, then the served head refitted on train+val with C frozen. With
    more than one of `targets` (fkstudy.labels: the top-level category, the category tree's level 2 read at the
    top level) each is fitted and cross-validated that way, and the one with the better CV accuracy is served
    (ties: the first listed). Never holds a test row."""
    ids = common_ids(catalog, name_ids)
    by_id = catalog.set_index("id")
    ids = ids[by_id.loc[ids, "split"].isin(("train", "val")).to_numpy()]
    assert_no_test(ids, catalog, ("train", "val"))
    cat = by_id.loc[ids]
    N, y, split = align(name_X, name_ids, ids).astype(np.float64), cat["category"].to_numpy(), cat["split"].to_numpy()
    tr, va = split == "train", split == "val"
    assert_no_test(ids[tr], catalog, ("train",))
    tried = {}
    for target in targets:
        y_fit = y if target == "category" else fit_labels(catalog, ids, target)
        chosen = heads.fit_head(N[tr], y_fit[tr], N[va], y_fit[va], cfg, seed)
        classes = top_classes(chosen.model.classes_)

        def fit_predict(a, b, y_fit=y_fit, chosen=chosen, classes=classes):
            fold_head = heads.fit_head(N[a], y_fit[a], N[b], y_fit[b], fixed(cfg, chosen), seed)
            return classes, {"name": proba_top(fold_head.model, N[b])}

        folds, oof = repeated_cv(y, fit_predict, n_splits=n_splits, n_repeats=n_repeats, seed=seed)
        tried[target] = (y_fit, chosen, folds, oof["name"], float(folds["accuracy"].mean()))
    target = best_target({t: round(tried[t][4], 10) for t in targets})
    y_fit, chosen, folds, oof, _ = tried[target]
    served = heads.fit_head(N, y_fit, N[va], y_fit[va], fixed(cfg, chosen), seed)   # train+val, C fixed
    return NameFit(heads.Fitted(served.model, chosen.curve, chosen.chosen), folds, oof, y, ids[tr], ids[va],
                   target, {t: tried[t][4] for t in targets})


def evaluate(nf: NameFit, text_model, name_X, name_ids, catalog: pd.DataFrame) -> dict:
    """The test products by their names alone, predicted once by the name head and, for comparison, by the
    full-text head (what a name-only product got before this head existed)."""
    ids = common_ids(catalog, name_ids)
    ids = ids[catalog.set_index("id").loc[ids, "split"].to_numpy() == "test"]
    y, N = catalog.set_index("id").loc[ids, "category"].to_numpy(), align(name_X, name_ids, ids).astype(np.float64)
    classes = sorted(catalog["category"].unique())
    model_classes = top_classes(nf.head.model.classes_)
    proba = proba_top(nf.head.model, N)
    return {"ids_test": ids, "y_test": y, "proba": proba, "test": scores(y, proba, model_classes, classes),
            "text_head_test": scores(y, proba_top(text_model, N), top_classes(text_model.classes_), classes,
                                     per_class=False)}


def summary(nf: NameFit, ev: dict, name_set: str) -> dict:
    f = nf.folds
    return {"set": name_set, "n_train": int(len(nf.ids_train)), "n_val": int(len(nf.ids_val)),
            "target": nf.target, "cv_accuracy_by_target": nf.cv_by_target or {},
            **{k.lower(): v for k, v in nf.head.chosen.items() if k != "val_accuracy"},
            "val_accuracy": nf.head.chosen.get("val_accuracy"),
            "cv_accuracy": float(f["accuracy"].mean()), "cv_accuracy_std": float(f["accuracy"].std(ddof=1)),
            "cv_macro_f1": float(f["macro_f1"].mean()), "cv_folds": int(len(f)),
            "test_accuracy": ev["test"]["accuracy"], "test_macro_f1": ev["test"]["macro_f1"],
            "test_log_loss": ev["test"]["log_loss"],
            "text_head_test_accuracy": ev["text_head_test"]["accuracy"]}
