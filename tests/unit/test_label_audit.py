"""Label audit (fkstudy.train.label_audit): out-of-fold probabilities never come from a head that saw the
product, cleanlab finds labels we flipped on purpose, and the summaries are right."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fkstudy.train import heads, label_audit
from tests.factories import head

CLASSES = ["Baby Care", "Computers", "Watches"]


@pytest.fixture
def world():
    """3 well-separated classes × 40 products; text and image features both informative; 4 labels flipped."""
    rng = np.random.default_rng(0)
    n = 120
    truth = np.repeat(CLASSES, n // 3)
    centres = {c: rng.normal(0, 1, 8) * 4 for c in CLASSES}
    T = np.stack([centres[c] + rng.normal(0, 1, 8) for c in truth]).astype(np.float32)
    I = np.stack([centres[c][::-1] + rng.normal(0, 1, 8) for c in truth]).astype(np.float32)
    ids = np.array([f"p{i:03d}" for i in range(n)])
    given = truth.copy()
    flipped = {"p003": "Computers", "p047": "Watches", "p085": "Baby Care", "p100": "Computers"}
    for pid, wrong in flipped.items():
        given[int(pid[1:])] = wrong
    catalog = pd.DataFrame({"id": ids, "category": given, "name": [f"product {i}" for i in range(n)],
                            "split": np.tile(["train", "train", "train", "val", "test"], n // 5)})
    return T, I, ids, catalog, flipped


def test_no_product_is_scored_by_a_head_that_saw_it(world, monkeypatch):
    T, _, ids, catalog, _ = world
    fitted_on = []
    real = heads.fit_head

    def spy(X_train, y_train, X_val, y_val, cfg, seed):
        fitted_on.append({tuple(np.round(x, 6)) for x in np.asarray(X_train)} | {tuple(np.round(x, 6)) for x in
                                                                                    np.asarray(X_val)})
        return real(X_train, y_train, X_val, y_val, cfg, seed)

    monkeypatch.setattr(heads, "fit_head", spy)
    y = dict(zip(catalog["id"], catalog["category"]))
    proba = label_audit.out_of_fold_proba(T, ids, y, CLASSES, head(C=[1.0]), n_splits=4, seed=0)
    assert len(fitted_on) == 4 and not proba.isna().any().any()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # each product's row was predicted by exactly one fold's head, and that head never saw the product
    rows = {tuple(np.round(x, 6)) for x in T}
    seen_by = [sum(r in s for s in fitted_on) for r in rows]
    assert set(seen_by) == {3}  # 4 folds: every product is fitted by the 3 heads that do not score it


def test_flipped_labels_are_found_with_their_true_category(world):
    T, I, ids, catalog, flipped = world
    proba, issues = label_audit.audit_features((T, ids), (I, ids[:-1]), catalog, head(C=[1.0]), n_splits=4,
                                               seed=0)
    assert len(proba) == len(ids)  # the product without a photo is scored from its text alone
    found = dict(zip(issues["id"], issues["suggested"]))
    assert set(flipped) <= set(found)
    truth = {pid: CLASSES[int(pid[1:]) // 40] for pid in flipped}
    assert all(found[pid] == truth[pid] for pid in flipped)
    assert list(issues["rank"]) == list(range(1, len(issues) + 1))
    assert (issues["suggested_probability"] > issues["given_probability"]).all()


def test_pair_counts_and_accuracy_without_flagged():
    issues = pd.DataFrame({"id": ["a", "b", "c"], "given": ["X", "X", "Y"], "suggested": ["Y", "Y", "X"]})
    pairs = label_audit.pair_counts(issues)
    assert pairs.iloc[0].tolist() == ["X", "Y", 2] and pairs["products"].sum() == 3
    predictions = pd.DataFrame({"id": ["a", "d", "e", "f"], "actual": ["X", "X", "Y", "Y"],
                                "predicted": ["Y", "X", "Y", "X"]})
    acc = label_audit.accuracy_without_flagged(predictions, issues)
    assert acc == {"test_accuracy": 0.5, "test_accuracy_unflagged": 2 / 3, "test_flagged": 1,
                   "test_errors_flagged": 1, "test_errors": 2}
    assert label_audit.pair_counts(issues.iloc[:0]).empty


def test_the_audit_feeds_no_model():
    """label_audit fits on every product (test included) to score each one out of fold: it is an audit, so no
    stage but the report may read what it writes."""
    from pathlib import Path

    from fkstudy.pipeline import stages

    root = Path(__file__).resolve().parents[2]
    pipeline = stages(root)
    outs = {next(iter(o)) if isinstance(o, dict) else o
            for key in ("outs", "metrics", "plots") for o in pipeline["label_audit"].get(key, [])}
    readers = {name for name, s in pipeline.items() for d in s.get("deps", [])
               if any(d == o or o.startswith(d.rstrip("/") + "/") for o in outs)}
    assert readers <= {"report"}, readers
