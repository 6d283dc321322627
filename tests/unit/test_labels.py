"""The category tree as a finer target (fkstudy.labels): sub-category labels, read back at the top level, chosen
against the top-level target by CV on train+val only; no test product's tree is ever looked up for a fit."""
from __future__ import annotations

import typing

import numpy as np
import pandas as pd
import pytest

from fkstudy import labels
from fkstudy.train import params as train_params
from fkstudy.train import recipes
from fkstudy.train.heads import HeadParams

LOGREG = HeadParams(type="logreg", scale="standard", C=[1.0], hidden=[8], alpha=0.001, lr=0.001, batch_size=32,
                    max_iter=2000, patience=5)


def tree_world(sub_signal: bool, n: int = 240, seed: int = 0) -> dict:
    """Two top categories. sub_signal: each the union of two sub-categories lying on opposite sides of the other's
    (an XOR: no linear head separates the tops, one per sub-category does). Else the tops are apart and the
    sub-category names are drawn at random (they carry nothing)."""
    rng = np.random.default_rng(seed)
    centres = {("A", "a1"): (3, 3), ("A", "a2"): (-3, -3), ("B", "b1"): (3, -3), ("B", "b2"): (-3, 3)} \
        if sub_signal else {("A", "a1"): (1, 0), ("A", "a2"): (1, 0), ("B", "b1"): (-1, 0), ("B", "b2"): (-1, 0)}
    keys = [list(centres)[i % 4] for i in range(n)]
    X = np.asarray([centres[k] for k in keys], dtype=float) + rng.normal(scale=1.0, size=(n, 2))
    top = np.asarray([k[0] for k in keys])
    sub = np.asarray([k[1] for k in keys]) if sub_signal else \
        np.asarray([f"{t.lower()}{rng.integers(1, 3)}" for t in top])
    split = np.asarray(["train"] * (n * 6 // 10) + ["val"] * (n * 2 // 10) + ["test"] * (n * 2 // 10))
    rng.shuffle(split)
    ids = np.asarray([f"p{i:03d}" for i in range(n)])
    catalog = pd.DataFrame({"id": ids, "category": top, "category_l2": sub, "split": split})
    return {"X": X.astype(np.float32), "ids": ids, "catalog": catalog}


def test_fit_labels_and_top():
    cat = pd.DataFrame({"id": ["x", "y", "z"], "category": ["A", "B", "A"], "category_l2": ["a1", "", "a2"]})
    assert list(labels.fit_labels(cat, ["z", "x"], "category")) == ["A", "A"]
    fine = labels.fit_labels(cat, ["z", "y", "x"], "category_l2")
    assert list(fine) == ["A >> a2", "B", "A >> a1"]       # a tree stopping at the top keeps the top name
    assert list(labels.top(fine)) == ["A", "B", "A"]
    with pytest.raises(ValueError, match="target must be one of"):
        labels.fit_labels(cat, ["x"], "category_l9")


def test_rollup_sums_each_top_categorys_subcategories_and_leaves_a_top_level_model_alone():
    p = np.asarray([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    out, tops = labels.rollup(p, ["A >> a1", "A >> a2", "B", "C >> c"])
    assert list(tops) == ["A", "B", "C"]
    np.testing.assert_allclose(out, [[0.3, 0.3, 0.4], [0.8, 0.1, 0.1]])
    same, classes = labels.rollup(p, ["A", "B", "C", "D"])
    assert same is p and list(classes) == ["A", "B", "C", "D"]


def test_the_params_literal_is_the_modules_targets():
    field = train_params.TextClassifierParams.model_fields["targets"]
    assert typing.get_args(typing.get_args(field.annotation)[0]) == labels.TARGETS
    with pytest.raises(ValueError, match="repeat"):
        train_params.TextClassifierParams.model_validate(
            {"head": LOGREG.model_dump(), "n_splits": 3, "n_repeats": 1, "targets": ["category", "category"]})


@pytest.mark.parametrize("sub_signal", [True, False])
def test_the_target_is_chosen_by_cv_and_no_test_tree_reaches_a_fit(monkeypatch, sub_signal):
    w = tree_world(sub_signal)
    looked_up = []
    real = recipes.fit_labels

    def spy(catalog, ids, target):
        looked_up.append(np.asarray(ids))
        return real(catalog, ids, target)

    monkeypatch.setattr(recipes, "fit_labels", spy)
    r = recipes.text_classifier(w["X"], w["ids"], w["catalog"], LOGREG, 0, n_splits=3, n_repeats=1,
                                targets=("category", "category_l2"))
    cv = {t: s["cv_accuracy"] for t, s in r["cv_by_target"].items()}
    expected = max(cv, key=lambda t: (cv[t], t == "category"))    # ties: the first listed
    assert r["target"] == expected, cv
    if sub_signal:   # the XOR: the tops alone are near chance, the sub-categories solve it
        assert expected == "category_l2" and cv["category_l2"] > 0.9 > 0.7 > cv["category"], cv
    test_ids = set(w["catalog"].loc[w["catalog"]["split"] == "test", "id"])
    assert looked_up and not test_ids & set(np.concatenate(looked_up))
    # the head answers at the top level, whichever target it was fitted on
    assert set(r["confusion"]["predicted"]) <= {"A", "B"} and r["test"]["n"] == len(test_ids)
    assert set(r["fitted"].model.classes_) == ({"A >> a1", "A >> a2", "B >> b1", "B >> b2"} if expected ==
                                               "category_l2" else {"A", "B"})


def test_the_name_head_serves_the_target_its_cv_chose_and_reads_it_at_the_top_level(monkeypatch):
    from fkstudy.train import name_head

    w = tree_world(sub_signal=True)
    looked_up = []
    real = name_head.fit_labels
    monkeypatch.setattr(name_head, "fit_labels", lambda c, ids, t: looked_up.append(np.asarray(ids)) or real(c, ids, t))
    nf = name_head.fit(w["X"], w["ids"], w["catalog"], LOGREG, 0, n_splits=3, n_repeats=1,
                       targets=("category", "category_l2"))
    assert nf.target == "category_l2" and nf.cv_by_target["category_l2"] > 0.9 > 0.7 > nf.cv_by_target["category"]
    assert len(nf.head.model.classes_) == 4 and nf.oof.shape == (len(nf.y), 2)   # served fine, read at the top
    np.testing.assert_allclose(nf.oof.sum(axis=1), 1.0)
    test_ids = set(w["catalog"].loc[w["catalog"]["split"] == "test", "id"])
    assert looked_up and not test_ids & set(np.concatenate(looked_up))
    # one target listed: the head it always was (top-level classes)
    flat = name_head.fit(w["X"], w["ids"], w["catalog"], LOGREG, 0, n_splits=3, n_repeats=1)
    assert flat.target == "category" and list(flat.head.model.classes_) == ["A", "B"]
    ev = name_head.evaluate(nf, flat.head.model, w["X"], w["ids"], w["catalog"])   # beside it: a top-level head
    assert ev["proba"].shape == (len(test_ids), 2) and ev["test"]["accuracy"] > 0.9
    s = name_head.summary(nf, ev, "toy")
    assert s["target"] == "category_l2" and set(s["cv_accuracy_by_target"]) == {"category", "category_l2"}


def test_fusion_keeps_the_target_whose_selected_candidate_cross_validates_best(monkeypatch):
    from fkstudy.train import fusion

    w = tree_world(sub_signal=True)
    rng = np.random.default_rng(1)
    image = rng.normal(size=(len(w["ids"]), 3)).astype(np.float32)          # a photo that says nothing
    looked_up = []
    real = fusion.fit_labels
    monkeypatch.setattr(fusion, "fit_labels", lambda c, ids, t: looked_up.append(np.asarray(ids)) or real(c, ids, t))
    fit, by_target = fusion.fit_fusion_targets(w["X"], w["ids"], image, w["ids"], w["catalog"], LOGREG, 0,
                                               modes=["geometric_proba"], weights=[0.5], n_splits=3, n_repeats=1,
                                               targets=("category", "category_l2"))
    assert fit.target == "category_l2" and by_target["category_l2"] > 0.9 > 0.7 > by_target["category"], by_target
    assert len(fit.heads["text"].model.classes_) == 4 and fit.oof[fit.selected["name"]].shape[1] == 2
    test_ids = set(w["catalog"].loc[w["catalog"]["split"] == "test", "id"])
    assert looked_up and not test_ids & set(np.concatenate(looked_up))
    ev = fusion.evaluate_fusion(fit, w["X"], w["ids"], image, w["ids"], w["catalog"])
    assert set(ev["pred"][fit.selected["name"]]) <= {"A", "B"} and ev["test"][fit.selected["name"]]["accuracy"] > 0.9


def test_best_target_takes_the_highest_score_and_ties_go_to_the_first_listed():
    assert labels.best_target({"category": 0.9, "category_l2": 0.91}) == "category_l2"
    assert labels.best_target({"category": 0.9, "category_l2": 0.9}) == "category"
    assert labels.best_target({"category_l2": 0.9, "category": 0.9}) == "category_l2"
    assert labels.best_target({"category": (0.9, -0.3), "category_l2": (0.9, -0.2)}) == "category_l2"  # lower loss
