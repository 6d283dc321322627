"""Classification metrics: the one scoring function every supervised stage uses, confusion tables,
intervals, and the names metrics are written under."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)


def label_scores(y, pred, classes, per_class: bool = True) -> dict:
    """Scores of predicted labels `pred` against `y` over `classes`: n, accuracy, macro / micro / weighted
    F1, ARI of the predictions and (with per_class) `per_class.<class>.{precision, recall, f1, support}`."""
    y, pred, classes = np.asarray(y), np.asarray(pred), list(classes)
    out = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y, pred, labels=classes, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=classes, average="weighted", zero_division=0)),
        "ari": float(adjusted_rand_score(y, pred)),
    }
    if per_class:
        p, r, f, s = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
        out["per_class"] = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                "support": int(s[i])} for i, c in enumerate(classes)}
    return out


def scores(y, proba, model_classes, classes, per_class: bool = True) -> dict:
    """The one scoring function of every supervised stage: class probabilities `proba` [n, k] (columns in
    `model_classes` order) against the labels `y` — label_scores of the argmax, plus the log loss."""
    model_classes = np.asarray(model_classes)
    proba = np.asarray(proba)
    out = label_scores(y, model_classes[proba.argmax(1)], classes, per_class)
    order = np.argsort(model_classes, kind="stable")  # log_loss takes the columns in sorted-label order
    out["log_loss"] = float(log_loss(np.asarray(y), np.clip(proba[:, order], 1e-15, 1),
                                     labels=list(model_classes[order])))
    return out


def confusion_table(ids, y_true, y_pred) -> pd.DataFrame:
    """One row per prediction (id, actual, predicted): DVC's `confusion` template counts the pairs."""
    return pd.DataFrame({"id": np.asarray(ids), "actual": np.asarray(y_true), "predicted": np.asarray(y_pred)})


def rounded(metrics: dict, digits: int = 4) -> dict:
    """Metrics for a JSON file: floats rounded, nesting kept (DVC shows `per_class.Watches.f1`)."""
    return {k: rounded(v, digits) if isinstance(v, dict) else (round(v, digits) if isinstance(v, float) else v)
            for k, v in metrics.items()}


def t_interval(values, level: float = 0.95) -> dict:
    """mean, sample std (ddof=1) and the Student-t confidence interval of the mean."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "std": 0.0, "ci_low": mean, "ci_high": mean, "n": int(len(v))}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * std / np.sqrt(len(v)))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": int(len(v))}


def class_key(name: str) -> str:
    """'Home Decor & Festive Needs' -> 'home_decor_and_festive_needs' (metric keys stay plain words)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("&", " and ")).strip("_")
