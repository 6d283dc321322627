"""Heads on cached features, on generated data: fitting and scoring a head, the recipes built on it
(text classifier, multi-seed interval, one-block CV) and the leak-free val-only fusion protocol.

Metrics helpers are tested in test_metrics.py, the split helpers in test_splits.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from threadpoolctl import threadpool_limits

from fkstudy.data.splits import common_ids, split_by_id
from fkstudy.errors import StudyError
from fkstudy.files import align
from fkstudy import fusion_rules
from fkstudy.train import fusion as F
from fkstudy.train import heads, recipes
from fkstudy.train.heads import HeadParams
from tests.factories import head

CLASSES = ["Baby Care", "Computers", "Home Decor & Festive Needs", "Watches"]


LOGREG = head(type="logreg", scale="standard", C=[0.1, 1.0], max_iter=500)
MLP = head(type="mlp", scale="standard", C=[1.0], hidden=[16], alpha=1e-3, lr=1e-2, batch_size=32, max_iter=30,
           patience=5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def world():
    """160 products, 4 classes; a text block and an image block each carrying part of the signal;
    ids deliberately shuffled differently in each feature 'file' (joins must be on id)."""
    X, yi = make_classification(n_samples=160, n_features=20, n_informative=8, n_redundant=0, n_classes=4,
                                n_clusters_per_class=1, class_sep=1.5, random_state=0)
    ids = np.array([f"p{i:03d}" for i in range(160)])
    y = np.array(CLASSES)[yi]
    rng = np.random.default_rng(0)
    split = np.array(["train"] * 96 + ["val"] * 32 + ["test"] * 32)
    rng.shuffle(split)
    catalog = pd.DataFrame({"id": ids, "category": y, "split": split})
    text = X[:, :12] + rng.normal(scale=0.5, size=(160, 12))
    image = np.hstack([X[:, 8:], rng.normal(size=(160, 4))])
    pt, pi = rng.permutation(160), rng.permutation(160)[:-3]  # 3 products without an image
    return {"catalog": catalog, "y": y, "ids": ids, "text": (text[pt].astype(np.float32), ids[pt]),
            "image": (image[pi].astype(np.float32), ids[pi])}


def test_head_params_require_every_field_and_a_registered_type():
    assert set(heads.HEADS.names()) == {"logreg", "mlp", "linear_svm"}
    with pytest.raises(ValueError, match="hidden"):
        HeadParams.model_validate({"type": "logreg", "scale": "standard", "C": [0.1, 1.0], "max_iter": 500})
    with pytest.raises(ValueError, match="type"):
        head(type="random_forest")


def test_metrics_keys_values_and_per_class(world):
    d = split_by_id(*world["text"], world["catalog"])
    f = heads.fit_head(d.X_train, d.y_train, d.X_val, d.y_val, LOGREG, 0)
    m = heads.evaluate(f.model, d.X_test, d.y_test, CLASSES)
    for k in ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "ari", "log_loss", "n"):
        assert k in m
    pred = f.model.predict(d.X_test.astype(np.float64))
    assert m["accuracy"] == pytest.approx(np.mean(pred == d.y_test))
    assert m["micro_f1"] == pytest.approx(m["accuracy"])  # single-label multiclass
    assert 0 <= m["macro_f1"] <= 1 and m["log_loss"] > 0 and -1 <= m["ari"] <= 1
    assert list(m["per_class"]) == CLASSES
    assert set(m["per_class"]["Watches"]) == {"precision", "recall", "f1", "support"}
    assert sum(v["support"] for v in m["per_class"].values()) == len(d.y_test) == m["n"]
    assert f.chosen["C"] in (0.1, 1.0)
    # every split row belongs to the split the catalog says
    split = dict(zip(world["catalog"]["id"], world["catalog"]["split"]))
    assert {split[i] for i in d.ids_test} == {"test"} and {split[i] for i in d.ids_train} == {"train"}


def test_evaluate_perfect_predictions():
    class Oracle:
        classes_ = np.array(CLASSES)

        def predict_proba(self, X):
            return np.eye(len(CLASSES))[X[:, 0].astype(int)]

    y = np.array(CLASSES * 3)
    X = np.array([[CLASSES.index(c)] for c in y], dtype=float)
    m = heads.evaluate(Oracle(), X, y, CLASSES)
    assert m["accuracy"] == m["macro_f1"] == m["ari"] == 1.0
    assert m["per_class"]["Home Decor & Festive Needs"]["f1"] == 1.0
    assert m["log_loss"] < 1e-6


def test_multiseed_mlp_curves_and_determinism(world):
    d = split_by_id(*world["image"], world["catalog"])
    seen = []
    r = recipes.multiseed(d, MLP, 7, 3, CLASSES, on_seed=lambda s, f, m: seen.append((s, f.curve, m["accuracy"])))
    assert [s for s, _, _ in seen] == [7, 8, 9]
    assert list(r["per_seed"]["seed"]) == [7, 8, 9]
    assert r["test_accuracy"]["mean"] == pytest.approx(r["per_seed"]["test_accuracy"].mean())
    assert r["test_accuracy"]["ci_low"] <= r["test_accuracy"]["mean"] <= r["test_accuracy"]["ci_high"]
    curve = seen[0][1]
    assert list(curve.columns) == ["epoch", "train_loss", "val_loss", "val_accuracy"]
    assert curve["epoch"].tolist() == list(range(1, len(curve) + 1)) and len(curve) <= MLP.max_iter
    again = recipes.multiseed(d, MLP, 7, 3, CLASSES)
    pd.testing.assert_frame_equal(r["per_seed"], again["per_seed"])


def test_multiseed_in_processes_equals_one_after_the_other(world, monkeypatch):
    """n_jobs=2: the seeds fit in two spawned worker processes, one BLAS thread each; the per-seed table, the curves
    and the fitted weights are those of the same seeds fitted one after the other in this process."""
    d = split_by_id(*world["image"], world["catalog"])
    here, fit = [], heads.fit_head
    monkeypatch.setattr(heads, "fit_head", lambda *a, **kw: here.append(a[-1]) or fit(*a, **kw))  # fits in this process
    seq, par = [], []
    r1 = recipes.multiseed(d, MLP, 7, 3, CLASSES, on_seed=lambda s, f, m: seq.append((s, f, m)), n_jobs=1)
    assert here == [7, 8, 9]
    r2 = recipes.multiseed(d, MLP, 7, 3, CLASSES, on_seed=lambda s, f, m: par.append((s, f, m)), n_jobs=2)
    assert here == [7, 8, 9]  # the parallel fits ran in the workers
    pd.testing.assert_frame_equal(r1["per_seed"], r2["per_seed"], check_exact=True)
    assert r1["test_accuracy"] == r2["test_accuracy"] and r1["macro_f1"] == r2["macro_f1"]
    assert [s for s, _, _ in par] == [7, 8, 9]  # on_seed runs here, in seed order
    for (_, f1, m1), (_, f2, m2) in zip(seq, par):
        pd.testing.assert_frame_equal(f1.curve, f2.curve, check_exact=True)
        for a, b in zip(f1.model.named_steps["clf"].coefs_, f2.model.named_steps["clf"].coefs_):
            np.testing.assert_array_equal(a, b)
        assert m1 == m2
    assert len({tuple(f.curve["val_loss"]) for _, f, _ in par}) == 3  # three different seeds, not one repeated


@pytest.mark.parametrize("cfg", [LOGREG, MLP], ids=["logreg", "mlp"])
def test_fit_head_deterministic(world, cfg):
    d = split_by_id(*world["text"], world["catalog"])
    p1 = heads.fit_head(d.X_train, d.y_train, d.X_val, d.y_val, cfg, 3).model.predict_proba(d.X_test.astype(float))
    p2 = heads.fit_head(d.X_train, d.y_train, d.X_val, d.y_val, cfg, 3).model.predict_proba(d.X_test.astype(float))
    np.testing.assert_array_equal(p1, p2)


# ------------------------------------------------------------------------------------ fusion (val-only protocol)
def _marked(world):
    """Copies of both blocks where every test row carries a marker value in its first column."""
    cat = world["catalog"]
    test_ids = set(cat.loc[cat["split"] == "test", "id"])
    (T, t_ids), (I, i_ids) = world["text"], world["image"]
    T, I = T.copy(), I.copy()
    T[np.isin(t_ids, list(test_ids)), 0] = 1e6
    I[np.isin(i_ids, list(test_ids)), 0] = 1e6
    return T, t_ids, I, i_ids, test_ids


def _spy(monkeypatch, calls: list):
    real = heads.fit_head

    def spy(X_train, y_train, X_val, y_val, cfg, seed):
        calls.append((len(X_train), len(X_val)))
        # concat rescales blocks: a marker row is still far larger than any other value
        assert np.abs(X_train).max() < 1e3 and np.abs(X_val).max() < 1e3, "a test row entered a fit"
        return real(X_train, y_train, X_val, y_val, cfg, seed)

    monkeypatch.setattr(heads, "fit_head", spy)


@pytest.mark.parametrize("mode", fusion_rules.MODES)
def test_fusion_never_fits_on_test_ids(world, monkeypatch, mode):
    """Test rows carry a marker value; a spy on fit_head records every matrix a fit sees
    (val-only protocol: fit on train, choose on val, predict test once)."""
    cat = world["catalog"]
    T, t_ids, I, i_ids, test_ids = _marked(world)
    calls = []
    _spy(monkeypatch, calls)
    fit = F.fit_fusion(T, t_ids, I, i_ids, cat, LOGREG, 0, modes=[mode], n_repeats=0, select_by="val")
    ev = F.evaluate_fusion(fit, T, t_ids, I, i_ids, cat)
    assert len(calls) == (3 if mode == "concat" else 2)  # text, image (+ the concat head)
    assert len(ev["ids_test"]) == len(test_ids & set(i_ids)) == len(set(ev["ids_test"]))
    assert set(ev["ids_test"]) <= test_ids
    best = F.select(fit.candidates, "val", mode)["name"]
    for key in ("text", "image", best):
        assert 0 <= ev["test"][key]["accuracy"] <= 1


def test_fusion_cv_never_fits_on_test_ids(world, monkeypatch):
    """The two-block CV (text, image, concat and average_proba per fold) is fusion's own CV on train+val."""
    cat = world["catalog"]
    T, t_ids, I, i_ids, test_ids = _marked(world)
    calls = []
    _spy(monkeypatch, calls)
    fit = F.fit_fusion(T, t_ids, I, i_ids, cat, LOGREG, 0, modes=["concat", "average_proba"], weights=[0.5],
                       n_splits=3, n_repeats=1, select_by="cv")
    assert len(calls) == 3 + 9  # text, image, concat on train; then 3 folds x (text, image, concat)
    folds = fit.folds
    assert set(folds["model"]) == {"text", "image", "concat", "average_proba@0.5"} and len(folds) == 12
    pool = set(cat.loc[cat["split"] != "test", "id"]) & set(i_ids)
    assert all(a + b == len(pool) for a, b in calls[3:])  # each fold: the train+val pool, no test row
    assert folds[["accuracy", "macro_f1"]].notna().all().all()


def test_fusion_poisoned_test_rows_still_train(world):
    """NaN in every test row: fitting must succeed (test rows never reach a fit); only scoring them
    fails, and that is the one place they are used."""
    cat = world["catalog"]
    (T, t_ids), (I, i_ids) = world["text"], world["image"]
    test_ids = list(cat.loc[cat["split"] == "test", "id"])
    T, I = T.copy(), I.copy()
    T[np.isin(t_ids, test_ids)] = np.nan
    I[np.isin(i_ids, test_ids)] = np.nan
    fit = F.fit_fusion(T, t_ids, I, i_ids, cat, LOGREG, 0, modes=["average_proba"], n_repeats=0, select_by="val")
    with pytest.raises(ValueError, match="(?i)nan"):  # raised by predict_proba on test, after both fits
        F.evaluate_fusion(fit, T, t_ids, I, i_ids, cat)
    cv = F.fit_fusion(T, t_ids, I, i_ids, cat, LOGREG, 0, modes=["concat", "average_proba"], weights=[0.5],
                      n_splits=3, n_repeats=1, select_by="cv")
    assert len(cv.folds) == 12 and np.isfinite(cv.folds[["accuracy", "macro_f1"]].to_numpy()).all()


# ------------------------------------------------------------------------------------ recipes
def test_one_block_cross_validate_uses_train_val_ids_only(world, monkeypatch):
    cat = world["catalog"]
    T, t_ids, _, _, test_ids = _marked(world)
    ids = common_ids(cat, t_ids)
    y = cat.set_index("id").loc[ids, "category"].to_numpy()
    calls = []
    _spy(monkeypatch, calls)
    folds = recipes.cross_validate(align(T, t_ids, ids), ids, y, cat, LOGREG, 0, n_splits=3, n_repeats=1,
                                   name="text")
    assert len(calls) == 3 and all(a + b == len(ids) - len(test_ids) for a, b in calls)
    assert list(folds.columns) == ["fold", "model", "accuracy", "macro_f1"] and set(folds["model"]) == {"text"}
    assert list(folds["fold"]) == [0, 1, 2] and folds["accuracy"].between(0, 1).all()
    s = recipes.cv_summary(folds)["text"]
    assert s["cv_folds"] == 3 and s["cv_accuracy"] == pytest.approx(folds["accuracy"].mean())


def test_text_classifier_runs(world):
    for cfg in (LOGREG, LOGREG.model_copy(update={"type": "linear_svm", "scale": "l2"})):
        r = recipes.text_classifier(*world["text"], world["catalog"], cfg, 0, n_splits=3, n_repeats=1)
        assert r["test"]["accuracy"] > 0.5
        assert r["cv"]["cv_folds"] == 3 and 0 <= r["cv"]["cv_macro_f1"] <= 1
        assert r["confusion"]["id"].isin(world["catalog"].query("split == 'test'")["id"]).all()
        again = recipes.text_classifier(*world["text"], world["catalog"], cfg, 0, n_splits=3, n_repeats=1)
        assert again["test"] == r["test"]


def test_fusion_refuses_random_init_images():
    assert recipes.require_real_weights({"weights": "imagenet"}, "vgg16.npz") == "imagenet"
    with pytest.raises(StudyError, match="efficientnetb0.npz was extracted with random-init"):
        recipes.require_real_weights({"weights": "random-init"}, "efficientnetb0.npz")
