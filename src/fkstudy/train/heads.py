"""Classifier heads on cached features: fit one head (the fit functions the heads registry names) and
score it. The registry and the head params are fkstudy.train.head_registry (light, no scikit-learn).

Pure functions (no file or MLflow I/O). Every fit sees train rows only; validation rows choose
hyper-parameters (C) and stop the MLP early; test rows are only ever predicted.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler
from sklearn.svm import LinearSVC

from ..evaluate.metrics import scores
from .head_registry import HEADS, HeadParams  # noqa: F401  (HeadParams: part of this module's API)


@dataclass
class Fitted:
    model: Pipeline                       # scaler + classifier, predict/predict_proba on raw features
    curve: pd.DataFrame | None = None     # MLP: epoch, train_loss, val_loss, val_accuracy
    chosen: dict = field(default_factory=dict)  # hyper-parameters selected on val (C, best_epoch, ...)


def fit_head(X_train, y_train, X_val, y_val, cfg: HeadParams, seed: int) -> Fitted:
    """Scale (fitted on train only) and fit one head; val selects C / stops the MLP."""
    entry = HEADS[cfg.type]
    X_train, X_val = np.asarray(X_train, dtype=np.float64), np.asarray(X_val, dtype=np.float64)
    if not (np.isfinite(X_train).all() and np.isfinite(X_val).all()):
        raise ValueError("fit_head: features contain NaN/inf")
    scaler = _scaler(cfg.scale).fit(X_train)
    Xs, Xv = scaler.transform(X_train), scaler.transform(X_val)
    clf, curve, chosen = entry.load()(Xs, np.asarray(y_train), Xv, np.asarray(y_val), cfg, seed)
    return Fitted(Pipeline([("scale", scaler), ("clf", clf)]), curve, chosen)


def evaluate(model, X, y, classes) -> dict:
    """Test metrics of a fitted head (fkstudy.evaluate.metrics.scores)."""
    return scores(y, model.predict_proba(np.asarray(X, dtype=np.float64)), model.classes_, classes)


def _scaler(kind: str):
    if kind == "standard":
        return StandardScaler()
    if kind == "l2":
        return Normalizer(norm="l2")
    if kind == "none":
        return FunctionTransformer(None)  # identity
    raise ValueError(f"scale must be standard/l2/none, got {kind!r}")


def _linear(kind: str, C: float, cfg: HeadParams, seed: int):
    if kind == "logreg":
        return LogisticRegression(C=C, max_iter=cfg.max_iter, random_state=seed)
    # LinearSVC has no probabilities; sigmoid calibration by internal 3-fold CV on the train rows
    svc = LinearSVC(C=C, max_iter=cfg.max_iter, random_state=seed)
    return CalibratedClassifierCV(svc, cv=3, method="sigmoid")


def fit_linear(Xs, y, Xv, yv, cfg: HeadParams, seed: int):
    """logreg / linear_svm: one fit per C, the best val accuracy kept (ties: the first listed)."""
    best = None
    for C in cfg.C:
        clf = _linear(cfg.type, float(C), cfg, seed).fit(Xs, y)
        score = accuracy_score(yv, clf.predict(Xv)) if len(yv) else 0.0
        if best is None or score > best[0]:  # ties keep the first (smaller C listed first = simpler)
            best = (score, C, clf)
    score, C, clf = best
    return clf, None, {"C": float(C), "val_accuracy": float(score)}


def fit_mlp(Xs, y, Xv, yv, cfg: HeadParams, seed: int):
    """Epoch loop with partial_fit: per-epoch curve on our val split, best-val-loss weights kept."""
    classes = np.unique(y)
    mlp = MLPClassifier(hidden_layer_sizes=tuple(cfg.hidden), alpha=cfg.alpha, learning_rate_init=cfg.lr,
                        batch_size=min(cfg.batch_size, len(y)), random_state=np.random.RandomState(seed), shuffle=True)
    rows, best, stale = [], None, 0
    for epoch in range(1, cfg.max_iter + 1):
        mlp.partial_fit(Xs, y, classes=classes)
        proba = mlp.predict_proba(Xv)
        val_loss = float(log_loss(yv, proba, labels=mlp.classes_))
        val_acc = float(accuracy_score(yv, mlp.classes_[proba.argmax(1)]))
        rows.append({"epoch": epoch, "train_loss": float(mlp.loss_), "val_loss": val_loss, "val_accuracy": val_acc})
        if best is None or val_loss < best[0] - 1e-6:
            best, stale = (val_loss, epoch, copy.deepcopy(mlp.coefs_), copy.deepcopy(mlp.intercepts_)), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    _, best_epoch, mlp.coefs_, mlp.intercepts_ = best
    mlp.random_state = seed  # an int again: the fitted model's params stay plain for logging
    return mlp, pd.DataFrame(rows), {"best_epoch": int(best_epoch), "epochs_run": len(rows)}
