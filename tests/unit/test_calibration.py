"""Calibration (fkstudy.evaluate.calibration) and significance (fkstudy.evaluate.bootstrap.mcnemar) on known
answers."""
from __future__ import annotations

import numpy as np
import pytest

from fkstudy.evaluate import calibration
from fkstudy.evaluate.bootstrap import mcnemar


def overconfident(n=4000, k=4, seed=0):
    """True probabilities, and the same sharpened (logits × 3): what an over-confident model reports."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.0, (n, k))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in true])
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)
    return true, sharp, y


def test_temperature_undoes_sharpening_and_lowers_ece():
    true, sharp, y = overconfident()
    t = calibration.fit_temperature(sharp, y)
    assert t == pytest.approx(3.0, rel=0.1)
    before = calibration.expected_calibration_error(sharp, y)
    after = calibration.expected_calibration_error(calibration.with_temperature(sharp, t), y)
    assert after < 0.03 < before
    np.testing.assert_allclose(calibration.with_temperature(sharp, 1.0), sharp, atol=1e-9)


def test_ece_and_reliability_on_a_hand_example():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    table = calibration.reliability(proba, y, bins=10)
    assert table["products"].sum() == 4
    # bin (0.8, 0.9]: 2 products, confidence 0.9, accuracy 0.5; bin (0.5, 0.6]: confidence 0.6, accuracy 1
    assert calibration.expected_calibration_error(proba, y, bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_risk_coverage_and_thresholds():
    proba = np.array([[0.99, 0.01], [0.95, 0.05], [0.8, 0.2], [0.55, 0.45]])
    y = np.array([0, 0, 1, 0])
    curve = calibration.risk_coverage(proba, y)
    assert curve["accuracy"].tolist() == [1.0, 1.0, 2 / 3, 0.75]
    summary = calibration.at_coverages(curve, (0.5, 1.0))
    assert summary == {"accuracy_at_50": 1.0, "threshold_at_50": 0.95, "accuracy_at_100": 0.75,
                       "threshold_at_100": 0.55}
    assert calibration.threshold_for_accuracy(proba, y, 0.99) == {"threshold": 0.95, "coverage": 0.5}
    assert calibration.threshold_for_accuracy(proba, np.array([1, 1, 0, 1]), 0.99) == {"threshold": 1.0,
                                                                                       "coverage": 0.0}


def test_mcnemar_counts_discordant_pairs():
    y = np.array([0] * 20)
    a = np.array([0] * 20)
    b = np.array([1] * 8 + [0] * 12)
    r = mcnemar(y, a, b)
    assert r["only_a_right"] == 8 and r["only_b_right"] == 0 and r["p_value"] == pytest.approx(2 * 0.5 ** 8)
    assert mcnemar(y, a, a)["p_value"] == 1.0


def test_calibrate_fits_on_out_of_fold_rows_and_scores_test_once():
    _, sharp, y = overconfident(n=6000)
    oof, oof_y, test, test_y = sharp[:4000], y[:4000], sharp[4000:], y[4000:]
    m, tables = calibration.calibrate(oof, oof_y, test, test_y, target_accuracy=0.9, bins=15)
    assert m["temperature"] == pytest.approx(calibration.fit_temperature(oof, oof_y))   # from the OOF rows only
    assert m["test_ece"] < 0.03 < m["test_ece_uncalibrated"]
    answered = calibration.with_temperature(test, m["temperature"]).max(1) >= m["threshold"]
    assert m["test_coverage_at_threshold"] == pytest.approx(answered.mean())
    assert 0 < m["oof_coverage_at_threshold"] < 1 and m["test_accuracy_at_threshold"] > 0.85
    assert set(tables["reliability"]["scaling"]) == {"none", "temperature"}
    assert tables["risk_coverage"]["coverage"].iloc[-1] == pytest.approx(1.0)
    # the test rows never move the temperature or the threshold
    m2, _ = calibration.calibrate(oof, oof_y, test[::-1] * 0 + 1 / test.shape[1], test_y, 0.9, 15)
    assert (m2["temperature"], m2["threshold"]) == (m["temperature"], m["threshold"])
