"""Confidence a marketplace can act on: temperature scaling, expected calibration error, the reliability
diagram and the risk–coverage curve (accuracy when the model answers only its most confident products).

The temperature is fitted on out-of-fold probabilities of train+val (a model's own training rows would make
it look over-confident); test is only scored with it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

COVERAGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def with_temperature(proba, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens over-confident probabilities, T = 1 changes nothing."""
    logits = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(proba, y_index, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising the negative log-likelihood of the true classes (`y_index`: column of the
    true class per row), searched on log T within `bounds`."""
    y_index = np.asarray(y_index)

    def nll(log_t: float) -> float:
        p = with_temperature(proba, np.exp(log_t))
        return float(-np.log(np.clip(p[np.arange(len(p)), y_index], 1e-12, 1.0)).mean())

    res = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def reliability(proba, y_index, bins: int = 15) -> pd.DataFrame:
    """Per confidence bin: products, mean confidence, accuracy (the reliability diagram's points)."""
    proba, y_index = np.asarray(proba), np.asarray(y_index)
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_index
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = which == b
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "products": int(m.sum()),
                     "confidence": float(conf[m].mean()) if m.any() else np.nan,
                     "accuracy": float(correct[m].mean()) if m.any() else np.nan})
    return pd.DataFrame(rows)


def expected_calibration_error(proba, y_index, bins: int = 15) -> float:
    """Σ_bins (products in bin / all) · |accuracy − mean confidence| (15 equal-width bins)."""
    table = reliability(proba, y_index, bins)
    used = table[table["products"] > 0]
    return float((used["products"] / used["products"].sum() * (used["accuracy"] - used["confidence"]).abs()).sum())


def risk_coverage(proba, y_index) -> pd.DataFrame:
    """Products sorted by confidence, most confident first: for each coverage (share answered), the accuracy
    on the answered ones and the confidence threshold that answers them."""
    proba, y_index = np.asarray(proba), np.asarray(y_index)
    conf = proba.max(axis=1)
    order = np.argsort(-conf, kind="stable")
    correct = (proba.argmax(axis=1) == y_index)[order]
    n = len(order)
    k = np.arange(1, n + 1)
    return pd.DataFrame({"coverage": k / n, "accuracy": np.cumsum(correct) / k, "threshold": conf[order]})


def at_coverages(curve: pd.DataFrame, coverages=COVERAGES) -> dict:
    """accuracy_at_<c> and threshold_at_<c> for each coverage c (the first row reaching it)."""
    out = {}
    for c in coverages:
        row = curve[curve["coverage"] >= c - 1e-12].iloc[0]
        out[f"accuracy_at_{int(round(100 * c))}"] = float(row["accuracy"])
        out[f"threshold_at_{int(round(100 * c))}"] = float(row["threshold"])
    return out


def threshold_for_accuracy(proba, y_index, target: float) -> dict:
    """The lowest confidence threshold whose answered products reach `target` accuracy (chosen on the rows
    given, e.g. out-of-fold train+val), with the coverage it gives there."""
    curve = risk_coverage(proba, y_index)
    ok = curve[curve["accuracy"] >= target]
    if ok.empty:
        return {"threshold": 1.0, "coverage": 0.0}
    row = ok.iloc[-1]
    return {"threshold": float(row["threshold"]), "coverage": float(row["coverage"])}
