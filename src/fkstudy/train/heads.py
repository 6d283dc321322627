"""Classifier heads on cached feature files: fit, evaluate, repeat over seeds, fuse modalities.

Pure functions (no file or MLflow I/O). Every fit sees train rows only; validation rows choose
hyper-parameters (C, fusion weight) and stop the MLP early; test rows are only ever predicted.
`late_fusion`, `text_classifier` and `cross_validate` take the catalog split and refuse to pass a
test id to any fit (`LeakError`).
The fusion protocol itself (candidates, selection on val / CV, test once) is `fkstudy.train.fusion`.

Head config (one dict, the params.yaml section of the stage):
  type      "logreg" | "mlp" | "linear_svm"
  C         list of inverse regularisation strengths; more than one -> chosen on val (logreg/svm)
  hidden    MLP hidden layer sizes, e.g. [256]
  alpha     MLP L2 penalty;  lr: MLP Adam learning rate;  batch_size: MLP minibatch
  max_iter  logreg/svm solver iterations, or MLP max epochs
  patience  MLP early stopping: epochs without a better val loss
  scale     "standard" (StandardScaler fitted on train) | "l2" (row normalisation, stateless) | "none"
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (accuracy_score, adjusted_rand_score, f1_score, log_loss,
                             precision_recall_fscore_support)
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler
from sklearn.svm import LinearSVC

HEAD_TYPES = ("logreg", "mlp", "linear_svm")
FUSION_MODES = ("concat", "average_proba")


class LeakError(AssertionError):
    """A test id (or a row not in the allowed split) was about to enter a fit call."""


@dataclass
class Fitted:
    model: Pipeline                       # scaler + classifier, predict/predict_proba on raw features
    curve: pd.DataFrame | None = None     # MLP: epoch, train_loss, val_loss, val_accuracy
    chosen: dict = field(default_factory=dict)  # hyper-parameters selected on val (C, best_epoch, ...)


# ---------------------------------------------------------------------------------------------- fit
def fit_head(X_train, y_train, X_val, y_val, cfg: dict, seed: int) -> Fitted:
    """Standardise (scaler fitted on train only) and fit one head; val selects C / stops the MLP."""
    kind = cfg["type"]
    if kind not in HEAD_TYPES:
        raise ValueError(f"head type must be one of {HEAD_TYPES}, got {kind!r}")
    X_train, X_val = np.asarray(X_train, dtype=np.float64), np.asarray(X_val, dtype=np.float64)
    if not (np.isfinite(X_train).all() and np.isfinite(X_val).all()):
        raise ValueError("fit_head: features contain NaN/inf")
    scaler = _scaler(cfg.get("scale", "standard")).fit(X_train)
    Xs, Xv = scaler.transform(X_train), scaler.transform(X_val)
    if kind == "mlp":
        clf, curve, chosen = _fit_mlp(Xs, np.asarray(y_train), Xv, np.asarray(y_val), cfg, seed)
        return Fitted(Pipeline([("scale", scaler), ("clf", clf)]), curve, chosen)
    best = None
    for C in _as_list(cfg["C"]):
        clf = _linear(kind, float(C), cfg, seed).fit(Xs, y_train)
        score = accuracy_score(y_val, clf.predict(Xv)) if len(y_val) else 0.0
        if best is None or score > best[0]:  # ties keep the first (smaller C listed first = simpler)
            best = (score, C, clf)
    score, C, clf = best
    return Fitted(Pipeline([("scale", scaler), ("clf", clf)]), None, {"C": float(C), "val_accuracy": float(score)})


def _scaler(kind: str):
    if kind == "standard":
        return StandardScaler()
    if kind == "l2":
        return Normalizer(norm="l2")
    if kind == "none":
        return FunctionTransformer(None)  # identity
    raise ValueError(f"scale must be standard/l2/none, got {kind!r}")


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _linear(kind: str, C: float, cfg: dict, seed: int):
    if kind == "logreg":
        return LogisticRegression(C=C, max_iter=cfg.get("max_iter", 1000), random_state=seed)
    # LinearSVC has no probabilities; sigmoid calibration by internal 3-fold CV on the train rows
    svc = LinearSVC(C=C, max_iter=cfg.get("max_iter", 1000), random_state=seed)
    return CalibratedClassifierCV(svc, cv=3, method="sigmoid")


def _fit_mlp(Xs, y, Xv, yv, cfg: dict, seed: int):
    """Epoch loop with partial_fit: per-epoch curve on our val split, best-val-loss weights kept."""
    classes = np.unique(y)
    mlp = MLPClassifier(hidden_layer_sizes=tuple(cfg.get("hidden", [256])), alpha=cfg.get("alpha", 1e-4),
                        learning_rate_init=cfg.get("lr", 1e-3), batch_size=min(cfg.get("batch_size", 64), len(y)),
                        random_state=np.random.RandomState(seed), shuffle=True)
    rows, best, stale = [], None, 0
    for epoch in range(1, cfg.get("max_iter", 200) + 1):
        mlp.partial_fit(Xs, y, classes=classes)
        proba = mlp.predict_proba(Xv)
        val_loss = float(log_loss(yv, proba, labels=mlp.classes_))
        val_acc = float(accuracy_score(yv, mlp.classes_[proba.argmax(1)]))
        rows.append({"epoch": epoch, "train_loss": float(mlp.loss_), "val_loss": val_loss, "val_accuracy": val_acc})
        if best is None or val_loss < best[0] - 1e-6:
            best, stale = (val_loss, epoch, copy.deepcopy(mlp.coefs_), copy.deepcopy(mlp.intercepts_)), 0
        else:
            stale += 1
            if stale >= cfg.get("patience", 10):
                break
    _, best_epoch, mlp.coefs_, mlp.intercepts_ = best
    mlp.random_state = seed  # an int again: the fitted model's params stay plain for logging
    return mlp, pd.DataFrame(rows), {"best_epoch": int(best_epoch), "epochs_run": len(rows)}


# ----------------------------------------------------------------------------------------- evaluate
def evaluate(model, X, y, classes) -> dict:
    """Test metrics: flat scalars plus `per_class.<class>.{precision,recall,f1,support}`."""
    return metrics_from_proba(y, model.predict_proba(np.asarray(X, dtype=np.float64)), model.classes_, classes)


def metrics_from_proba(y, proba, model_classes, classes) -> dict:
    y = np.asarray(y)
    model_classes = np.asarray(model_classes)
    pred = model_classes[np.asarray(proba).argmax(1)]
    classes = list(classes)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    out = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y, pred, labels=classes, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=classes, average="weighted", zero_division=0)),
        "ari": float(adjusted_rand_score(y, pred)),
        "log_loss": float(log_loss(y, np.clip(proba, 1e-15, 1), labels=list(model_classes))),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, c in enumerate(classes)},
    }
    return out


def confusion_table(ids, y_true, y_pred) -> pd.DataFrame:
    """One row per prediction (id, actual, predicted): DVC's `confusion` template counts the pairs."""
    return pd.DataFrame({"id": np.asarray(ids), "actual": np.asarray(y_true), "predicted": np.asarray(y_pred)})


def rounded(metrics: dict, digits: int = 4) -> dict:
    """Metrics for a JSON file: floats rounded, nesting kept (DVC shows `per_class.Watches.f1`)."""
    return {k: rounded(v, digits) if isinstance(v, dict) else (round(v, digits) if isinstance(v, float) else v)
            for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------- multiseed
def t_interval(values, level: float = 0.95) -> dict:
    """mean, sample std (ddof=1) and the Student-t confidence interval of the mean."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "std": 0.0, "ci_low": mean, "ci_high": mean, "n": int(len(v))}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * std / np.sqrt(len(v)))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": int(len(v))}


def multiseed(data: "Splits", cfg: dict, seed: int, n_seeds: int, classes, on_seed=None) -> dict:
    """The same head over seeds seed..seed+n-1; mean/std/95% t-interval of test accuracy and macro-F1.

    `on_seed(seed, fitted, test_metrics)` is called after each seed (the stage logs MLflow runs there).
    """
    rows = []
    for s in range(seed, seed + n_seeds):
        fitted = fit_head(data.X_train, data.y_train, data.X_val, data.y_val, cfg, s)
        m = evaluate(fitted.model, data.X_test, data.y_test, classes)
        rows.append({"seed": s, "test_accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                     "val_accuracy": evaluate(fitted.model, data.X_val, data.y_val, classes)["accuracy"],
                     **{k: v for k, v in fitted.chosen.items() if isinstance(v, (int, float))}})
        if on_seed is not None:
            on_seed(s, fitted, m)
    table = pd.DataFrame(rows)
    return {"per_seed": table,
            "test_accuracy": t_interval(table["test_accuracy"]),
            "macro_f1": t_interval(table["macro_f1"])}


# ------------------------------------------------------------------------------------ split handling
@dataclass
class Splits:
    ids_train: np.ndarray
    X_train: np.ndarray
    y_train: np.ndarray
    ids_val: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    ids_test: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def split_by_id(X, ids, catalog: pd.DataFrame) -> Splits:
    """Rows of a feature file grouped by the catalog split, joined on id (never row order).

    Catalog ids without a feature row (e.g. products with no photo) are left out of every split.
    """
    index = {k: i for i, k in enumerate(np.asarray(ids).tolist())}
    parts = {}
    for name in ("train", "val", "test"):
        sub = catalog[(catalog["split"] == name) & catalog["id"].isin(index)]
        rows = [index[i] for i in sub["id"]]
        parts[name] = (sub["id"].to_numpy(), np.asarray(X)[rows], sub["category"].to_numpy())
    return Splits(*parts["train"], *parts["val"], *parts["test"])


def assert_no_test(fit_ids, catalog: pd.DataFrame, allowed=("train",)) -> None:
    """Raise LeakError if any id about to be fitted on is not in an allowed split (never 'test')."""
    if "test" in allowed:
        raise LeakError("'test' can never be an allowed fit split")
    split = dict(zip(catalog["id"], catalog["split"]))
    bad = [i for i in np.asarray(fit_ids).tolist() if split.get(i) not in allowed]
    if bad:
        raise LeakError(f"{len(bad)} ids outside {list(allowed)} would enter a fit, e.g. {bad[:3]} "
                        f"(splits {sorted({str(split.get(i)) for i in bad})})")


def _guarded_fit(d: Splits, catalog, cfg, seed, allowed=("train",)) -> Fitted:
    assert_no_test(d.ids_train, catalog, allowed)
    assert_no_test(d.ids_val, catalog, allowed if allowed != ("train",) else ("val",))
    return fit_head(d.X_train, d.y_train, d.X_val, d.y_val, cfg, seed)


# --------------------------------------------------------------------------------- cross-validation
def cross_validate(blocks: dict, ids, y, catalog: pd.DataFrame, cfg: dict, seed: int, n_splits: int,
                   n_repeats: int, weight: float = 0.5, classes=None) -> pd.DataFrame:
    """Repeated stratified K-fold on train+val ids only: accuracy and macro-F1 per fold.

    `blocks` maps a name ("text", "image", or one name for a single set) to features aligned to
    `ids`. With two blocks the folds also score concat and average_proba fusion (fixed `weight`).
    Hyper-parameters are used as given (C: the first of the list) — the fold's own rows stop the MLP.
    """
    ids, y = np.asarray(ids), np.asarray(y)
    pool = catalog.set_index("id").loc[ids, "split"].isin(["train", "val"]).to_numpy()
    ids, y = ids[pool], y[pool]
    blocks = {k: np.asarray(v)[pool] for k, v in blocks.items()}
    assert_no_test(ids, catalog, allowed=("train", "val"))
    classes = classes if classes is not None else np.unique(y)
    cfg1 = {**cfg, "C": _as_list(cfg["C"])[:1]}
    rskf = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    rows = []
    for fold, (tr, te) in enumerate(rskf.split(ids, y)):
        probas = {}
        for name, B in blocks.items():
            f = fit_head(B[tr], y[tr], B[te], y[te], cfg1, seed)
            probas[name] = (f.model.predict_proba(B[te]), f.model.classes_)
        if len(blocks) == 2:
            (a, ca), (b, cb) = probas.values()
            probas["average_proba"] = (weight * a + (1 - weight) * b, ca)
            Z = block_standardize(list(blocks.values()), tr)
            f = fit_head(Z[tr], y[tr], Z[te], y[te], cfg1, seed)
            probas["concat"] = (f.model.predict_proba(Z[te]), f.model.classes_)
        for name, (p, c) in probas.items():
            m = metrics_from_proba(y[te], p, c, classes)
            rows.append({"fold": fold, "model": name, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
    return pd.DataFrame(rows)


def cv_summary(folds: pd.DataFrame) -> dict:
    out = {}
    for name, g in folds.groupby("model", sort=True):
        out[name] = {"cv_accuracy": float(g["accuracy"].mean()), "cv_accuracy_std": float(g["accuracy"].std(ddof=1)),
                     "cv_macro_f1": float(g["macro_f1"].mean()), "cv_macro_f1_std": float(g["macro_f1"].std(ddof=1)),
                     "cv_folds": int(len(g))}
    return out


# ------------------------------------------------------------------------------------------- fusion
def require_real_weights(meta: dict, path: str) -> str:
    """Fusion needs a real image representation: refuse a feature file extracted with random weights."""
    weights = meta.get("weights", "n/a")
    if weights == "random-init":
        raise ValueError(f"{path} was extracted with random-init weights; fusion needs a real image representation "
                         f"(provide the pretrained weights, or set fusion.image_set to vgg16/efficientnet_lite0)")
    return weights


def block_standardize(blocks: list, fit_rows) -> np.ndarray:
    """Concatenate feature blocks, each standardised with statistics of `fit_rows` only and divided
    by sqrt(its width), so a 5000-d text block does not drown a 512-d image block."""
    out = []
    for B in blocks:
        B = np.asarray(B, dtype=np.float64)
        mu, sd = B[fit_rows].mean(0), B[fit_rows].std(0)
        sd[sd == 0] = 1.0
        out.append((B - mu) / sd / np.sqrt(B.shape[1]))
    return np.hstack(out)


def common_ids(catalog: pd.DataFrame, *id_arrays) -> np.ndarray:
    """Catalog ids (catalog order) present in every feature file."""
    keep = catalog["id"].to_numpy()
    for ids in id_arrays:
        keep = keep[np.isin(keep, np.asarray(ids))]
    return keep


def _rows(X, ids, wanted) -> np.ndarray:
    index = {k: i for i, k in enumerate(np.asarray(ids).tolist())}
    return np.asarray(X)[[index[w] for w in wanted]]


def late_fusion(text_X, text_ids, image_X, image_ids, catalog: pd.DataFrame, mode: str, cfg: dict, seed: int,
                weights=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> dict:
    """One fusion mode on the ids both files cover, chosen on val: heads fit on train ids only, val
    picks C and the average_proba weight, test is predicted once. Also returns each single
    modality's result. (The fusion stage runs the full protocol: `fkstudy.train.fusion.fit_fusion`.)

    mode: "concat" (one head on block-standardised [text | image]) or "average_proba"
    (w * P_text + (1 - w) * P_image, w chosen on val).
    """
    from . import fusion as F

    if mode not in FUSION_MODES:
        raise ValueError(f"fusion mode must be one of {FUSION_MODES}, got {mode!r}")
    fit = F.fit_fusion(text_X, text_ids, image_X, image_ids, catalog, cfg, seed, modes=[mode], weights=weights,
                       n_repeats=0, select_by="val")
    ev = F.evaluate_fusion(fit, text_X, text_ids, image_X, image_ids, catalog)
    result = {"ids_test": ev["ids_test"], "y_test": ev["y_test"], "classes": fit.classes,
              "n_train": int(len(fit.ids_train)), "n_val": int(len(fit.ids_val)), "n_test": int(len(ev["ids_test"]))}
    for name in ("text", "image"):
        result[name] = {"test": ev["test"][name], "chosen": fit.heads[name].chosen, "model": fit.heads[name].model}
    best = F.select(fit.candidates, "val", mode)
    if mode == "concat":
        chosen, model = fit.heads["concat"].chosen, fit.heads["concat"].model
    else:
        chosen, model = {"text_weight": best["text_weight"]}, None
    result["fusion"] = {"test": ev["test"][best["name"]], "chosen": chosen, "model": model,
                        "pred": ev["pred"][best["name"]]}
    return result


# ------------------------------------------------------------------------------------ text classifier
def text_classifier(X, ids, catalog: pd.DataFrame, cfg: dict, seed: int, n_splits: int = 5,
                    n_repeats: int = 2) -> dict:
    """Logistic regression / linear SVM on one feature set: test metrics + repeated CV on train+val."""
    d = split_by_id(X, ids, catalog)
    classes = sorted(catalog["category"].unique())
    f = _guarded_fit(d, catalog, cfg, seed)
    test = evaluate(f.model, d.X_test, d.y_test, classes)
    pred = f.model.predict(np.asarray(d.X_test, dtype=np.float64))
    pool_ids = np.concatenate([d.ids_train, d.ids_val])
    pool_X = np.concatenate([d.X_train, d.X_val])
    pool_y = np.concatenate([d.y_train, d.y_val])
    cv_cfg = {**cfg, "C": [f.chosen["C"]]} if "C" in f.chosen else cfg
    folds = cross_validate({"text": pool_X}, pool_ids, pool_y, catalog, cv_cfg, seed, n_splits, n_repeats,
                           classes=classes)
    return {"fitted": f, "test": test, "cv": cv_summary(folds)["text"], "folds": folds,
            "confusion": confusion_table(d.ids_test, d.y_test, pred)}
