"""The one cross-validation loop of the study's heads on cached features (text classifier, fusion candidates,
the name-only head): repeated stratified K-fold over the train+val rows, seeded, each fold's models fitted on
the other folds only, scored on the held-out fold, and the out-of-fold probabilities of the first repeat kept
(every row scored once by a model that did not see it: what calibration is fitted on).

The callers own what is fitted (`fit_predict`) and how a fold is scored (`score`); the folds, their order and
the out-of-fold bookkeeping are here only. Pure functions (no file or MLflow I/O).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import RepeatedStratifiedKFold

from ..evaluate.metrics import scores
from .heads import Fitted, HeadParams

FOLD_COLUMNS = ["fold", "model", "accuracy", "macro_f1", "log_loss"]


def fixed(cfg: HeadParams, fitted: Fitted) -> HeadParams:
    """The head config with the hyper-parameter chosen on val frozen (for the CV refits)."""
    return cfg.model_copy(update={"C": [fitted.chosen["C"]]}) if "C" in fitted.chosen else cfg


def fold_scores(y, proba, classes) -> dict:
    """Accuracy, macro-F1 and log loss of probabilities `proba` (columns in `classes` order): one CV fold's row."""
    s = scores(y, proba, classes, classes, per_class=False)
    return {k: s[k] for k in ("accuracy", "macro_f1", "log_loss")}


FitPredict = Callable[[np.ndarray, np.ndarray], "tuple[Sequence, Mapping[str, np.ndarray]]"]


def repeated_cv(y, fit_predict: FitPredict, *, n_splits: int, n_repeats: int, seed: int,
                score: Callable[[np.ndarray, np.ndarray, Sequence], dict] = fold_scores
                ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Repeated stratified K-fold (`RepeatedStratifiedKFold(n_splits, n_repeats, random_state=seed)`) over the
    rows of labels `y`.

    fit_predict(a, b)  fits on rows `a` only (rows `b` may pick an epoch / be predicted) and returns
                       (model_classes, {model name: probabilities of rows b, columns in model_classes order})
    score(y_b, P, model_classes) -> {metric: value} for one model on one fold (default `fold_scores`)

    Returns (folds: one row per fold and model: fold, model, then the score's metrics; oof: {model name:
    out-of-fold probabilities of every row, from the first repeat}).
    """
    y = np.asarray(y)
    rskf = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    rows, oof = [], {}
    for fold, (a, b) in enumerate(rskf.split(np.zeros((len(y), 1)), y)):
        model_classes, probas = fit_predict(a, b)
        for name, p in probas.items():
            if fold < n_splits:
                oof.setdefault(name, np.zeros((len(y), np.shape(p)[1])))[b] = p
            rows.append({"fold": fold, "model": name, **score(y[b], p, model_classes)})
    return pd.DataFrame(rows), oof
