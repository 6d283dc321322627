"""fkstudy.evaluate.metrics: the one scoring function, label scores, confusion table, t-interval,
rounding for JSON and metric-key names."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss

from fkstudy.evaluate import metrics as M

CLASSES = ["Baby Care", "Computers", "Home Decor & Festive Needs", "Watches"]


@pytest.fixture(scope="module")
def fitted():
    """A logistic regression on generated data and a held-out block with its labels (class names)."""
    X, yi = make_classification(n_samples=160, n_features=10, n_informative=6, n_redundant=0, n_classes=4,
                                n_clusters_per_class=1, class_sep=1.5, random_state=0)
    y = np.array(CLASSES)[yi]
    model = LogisticRegression(max_iter=500).fit(X[:120], y[:120])
    return model, X[120:], y[120:]


def test_confusion_table_sums(fitted):
    model, X, y = fitted
    ids = np.array([f"p{i:03d}" for i in range(len(y))])
    pred = model.predict(X)
    t = M.confusion_table(ids, y, pred)
    assert list(t.columns) == ["id", "actual", "predicted"] and len(t) == len(y)
    assert list(t["id"]) == list(ids)
    cm = pd.crosstab(t["actual"], t["predicted"])
    assert cm.to_numpy().sum() == len(y)
    assert np.trace(cm.reindex(index=CLASSES, columns=CLASSES, fill_value=0).to_numpy()) == (pred == y).sum()


def test_scores_is_label_scores_of_the_argmax_plus_log_loss(fitted):
    model, X, y = fitted
    proba = model.predict_proba(X)
    s = M.scores(y, proba, model.classes_, CLASSES)
    pred = model.classes_[proba.argmax(1)]
    assert s == {**M.label_scores(y, pred, CLASSES), "log_loss": pytest.approx(log_loss(y, proba, labels=model.classes_))}
    assert s["accuracy"] == pytest.approx(accuracy_score(y, pred)) and s["n"] == len(y)
    assert s["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert list(s["per_class"]) == CLASSES
    assert sum(v["support"] for v in s["per_class"].values()) == len(y)
    # probability columns in another order than `classes`: scored by the model's own class order
    rev = M.scores(y, proba[:, ::-1], model.classes_[::-1], CLASSES)
    assert rev["accuracy"] == s["accuracy"] and rev["log_loss"] == pytest.approx(s["log_loss"])
    assert "per_class" not in M.scores(y, proba, model.classes_, CLASSES, per_class=False)


def test_label_scores_perfect_and_absent_class():
    y = np.array(["a", "b", "a", "b"])
    m = M.label_scores(y, y, ["a", "b", "c"])
    assert m["accuracy"] == m["micro_f1"] == m["ari"] == 1.0
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}  # no warning, no NaN
    assert m["macro_f1"] == pytest.approx(2 / 3)  # the absent class counts as 0 in the macro mean


def test_t_interval_math():
    v = [0.80, 0.81, 0.79, 0.80, 0.82]
    r = M.t_interval(v)
    half = stats.t.ppf(0.975, 4) * np.std(v, ddof=1) / np.sqrt(5)
    assert r["mean"] == pytest.approx(0.804)
    assert r["std"] == pytest.approx(np.std(v, ddof=1))
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(0.804 - half), pytest.approx(0.804 + half))
    assert r["n"] == 5
    assert M.t_interval([0.5])["ci_low"] == M.t_interval([0.5])["ci_high"] == 0.5


def test_rounded_keeps_nesting():
    out = M.rounded({"a": 0.123456, "per_class": {"Watches": {"f1": 0.987654}}, "n": 3, "s": "x"})
    assert out == {"a": 0.1235, "per_class": {"Watches": {"f1": 0.9877}}, "n": 3, "s": "x"}


def test_class_key_is_plain_words():
    assert M.class_key("Home Decor & Festive Needs") == "home_decor_and_festive_needs"
    assert M.class_key("Beauty and Personal Care") == "beauty_and_personal_care"
    assert M.class_key("  Kitchen & Dining ") == "kitchen_and_dining"
