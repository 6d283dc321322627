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


def calibrate(oof_proba, oof_y, test_proba, test_y, target_accuracy: float, bins: int = 15) -> tuple[dict, dict]:
    """Temperature and answer threshold chosen on out-of-fold train+val probabilities, then test scored once.

    `*_y` are column indices of the true classes. Returns (metrics, tables): metrics hold the temperature,
    the threshold that reached `target_accuracy` out of fold (and its coverage there), the test ECE before
    and after scaling, the test accuracy and coverage at that threshold, and accuracy_at_<c> /
    threshold_at_<c> of the test risk–coverage curve; tables hold the test reliability bins (before /
    after) and the risk–coverage curve."""
    temperature = fit_temperature(oof_proba, oof_y)
    oof_cal, test_cal = with_temperature(oof_proba, temperature), with_temperature(test_proba, temperature)
    chosen = threshold_for_accuracy(oof_cal, oof_y, target_accuracy)
    test_y = np.asarray(test_y)
    answered = test_cal.max(axis=1) >= chosen["threshold"]
    correct = test_cal.argmax(axis=1) == test_y
    curve = risk_coverage(test_cal, test_y)
    metrics = {"temperature": temperature, "target_accuracy": target_accuracy, "bins": bins,
               "threshold": chosen["threshold"], "oof_coverage_at_threshold": chosen["coverage"],
               "oof_ece": expected_calibration_error(oof_cal, oof_y, bins),
               "test_ece_uncalibrated": expected_calibration_error(test_proba, test_y, bins),
               "test_ece": expected_calibration_error(test_cal, test_y, bins),
               "test_coverage_at_threshold": float(answered.mean()),
               "test_accuracy_at_threshold": float(correct[answered].mean()) if answered.any() else float("nan"),
               **{f"test_{k}": v for k, v in at_coverages(curve).items()}}
    before, after = reliability(test_proba, test_y, bins), reliability(test_cal, test_y, bins)
    tables = {"reliability": pd.concat([before.assign(scaling="none"), after.assign(scaling="temperature")]),
              "risk_coverage": curve}
    return metrics, tables
