"""Heads on cached features, on generated data: metrics, multi-seed interval, leak-free fusion."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.datasets import make_classification
from threadpoolctl import threadpool_limits

from fkstudy.train import heads

CLASSES = ["Baby Care", "Computers", "Home Decor & Festive Needs", "Watches"]
LOGREG = {"type": "logreg", "scale": "standard", "C": [0.1, 1.0], "max_iter": 500}
MLP = {"type": "mlp", "scale": "standard", "C": [1.0], "hidden": [16], "alpha": 1e-3, "lr": 1e-2,
       "batch_size": 32, "max_iter": 30, "patience": 5}


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


def test_metrics_keys_values_and_per_class(world):
    d = heads.split_by_id(*world["text"], world["catalog"])
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


def test_confusion_table_sums(world):
    d = heads.split_by_id(*world["text"], world["catalog"])
    f = heads.fit_head(d.X_train, d.y_train, d.X_val, d.y_val, LOGREG, 0)
    pred = f.model.predict(d.X_test.astype(np.float64))
    t = heads.confusion_table(d.ids_test, d.y_test, pred)
    assert list(t.columns) == ["id", "actual", "predicted"] and len(t) == len(d.y_test)
    cm = pd.crosstab(t["actual"], t["predicted"])
    assert cm.to_numpy().sum() == len(d.y_test)
    assert np.trace(cm.reindex(index=CLASSES, columns=CLASSES, fill_value=0).to_numpy()) == (pred == d.y_test).sum()


def test_t_interval_math():
    v = [0.80, 0.81, 0.79, 0.80, 0.82]
    r = heads.t_interval(v)
    half = stats.t.ppf(0.975, 4) * np.std(v, ddof=1) / np.sqrt(5)
    assert r["mean"] == pytest.approx(0.804)
    assert r["std"] == pytest.approx(np.std(v, ddof=1))
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(0.804 - half), pytest.approx(0.804 + half))
    assert heads.t_interval([0.5])["ci_low"] == heads.t_interval([0.5])["ci_high"] == 0.5


def test_multiseed_mlp_curves_and_determinism(world):
    d = heads.split_by_id(*world["image"], world["catalog"])
    seen = []
    r = heads.multiseed(d, MLP, 7, 3, CLASSES, on_seed=lambda s, f, m: seen.append((s, f.curve, m["accuracy"])))
    assert [s for s, _, _ in seen] == [7, 8, 9]
    assert list(r["per_seed"]["seed"]) == [7, 8, 9]
    assert r["test_accuracy"]["mean"] == pytest.approx(r["per_seed"]["test_accuracy"].mean())
    assert r["test_accuracy"]["ci_low"] <= r["test_accuracy"]["mean"] <= r["test_accuracy"]["ci_high"]
    curve = seen[0][1]
    assert list(curve.columns) == ["epoch", "train_loss", "val_loss", "val_accuracy"]
    assert curve["epoch"].tolist() == list(range(1, len(curve) + 1)) and len(curve) <= MLP["max_iter"]
    again = heads.multiseed(d, MLP, 7, 3, CLASSES)
    pd.testing.assert_frame_equal(r["per_seed"], again["per_seed"])


@pytest.mark.parametrize("cfg", [LOGREG, MLP], ids=["logreg", "mlp"])
def test_fit_head_deterministic(world, cfg):
    d = heads.split_by_id(*world["text"], world["catalog"])
    p1 = heads.fit_head(d.X_train, d.y_train, d.X_val, d.y_val, cfg, 3).model.predict_proba(d.X_test.astype(float))
    p2 = heads.fit_head(d.X_train, d.y_train, d.X_val, d.y_val, cfg, 3).model.predict_proba(d.X_test.astype(float))
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("mode", heads.FUSION_MODES)
def test_fusion_never_fits_on_test_ids(world, monkeypatch, mode):
    """Test rows carry a marker value; a spy on fit_head records every matrix a fit sees."""
    cat = world["catalog"]
    test_ids = set(cat.loc[cat["split"] == "test", "id"])
    (T, t_ids), (I, i_ids) = world["text"], world["image"]
    T, I = T.copy(), I.copy()
    T[np.isin(t_ids, list(test_ids)), 0] = 1e6
    I[np.isin(i_ids, list(test_ids)), 0] = 1e6
    calls = []
    real = heads.fit_head

    def spy(X_train, y_train, X_val, y_val, cfg, seed):
        calls.append((len(X_train), len(X_val)))
        # concat rescales blocks: a marker row is still far larger than any other value
        assert np.abs(X_train).max() < 1e3 and np.abs(X_val).max() < 1e3, "a test row entered a fit"
        return real(X_train, y_train, X_val, y_val, cfg, seed)

    monkeypatch.setattr(heads, "fit_head", spy)
    r = heads.late_fusion(T, t_ids, I, i_ids, cat, mode, LOGREG, 0)
    assert len(calls) == (2 if mode == "average_proba" else 3)
    assert r["n_test"] == len(test_ids & set(i_ids)) and len(r["ids_test"]) == r["n_test"]
    assert set(r["ids_test"]) <= test_ids
    for key in ("text", "image", "fusion"):
        assert 0 <= r[key]["test"]["accuracy"] <= 1
    ids = heads.common_ids(cat, t_ids, i_ids)
    y = cat.set_index("id").loc[ids, "category"].to_numpy()
    calls.clear()
    folds = heads.cross_validate({"text": heads._rows(T, t_ids, ids), "image": heads._rows(I, i_ids, ids)},
                                 ids, y, cat, LOGREG, 0, n_splits=3, n_repeats=1)
    assert len(calls) == 9  # 3 folds x (text, image, concat), none saw a marker row
    assert set(folds["model"]) == {"text", "image", "concat", "average_proba"} and len(folds) == 12


def test_fusion_poisoned_test_rows_still_train(world):
    """NaN in every test row: fitting must succeed (test rows never reach a fit); only scoring them
    fails, and that is the one place they are used."""
    cat = world["catalog"]
    (T, t_ids), (I, i_ids) = world["text"], world["image"]
    test_ids = list(cat.loc[cat["split"] == "test", "id"])
    T, I = T.copy(), I.copy()
    T[np.isin(t_ids, test_ids)] = np.nan
    I[np.isin(i_ids, test_ids)] = np.nan
    with pytest.raises(ValueError, match="(?i)nan"):  # raised by predict_proba on test, after both fits
        heads.late_fusion(T, t_ids, I, i_ids, cat, "average_proba", LOGREG, 0)
    ids = heads.common_ids(cat, t_ids, i_ids)
    y = cat.set_index("id").loc[ids, "category"].to_numpy()
    folds = heads.cross_validate({"text": heads._rows(T, t_ids, ids), "image": heads._rows(I, i_ids, ids)},
                                 ids, y, cat, LOGREG, 0, n_splits=3, n_repeats=1)
    assert np.isfinite(folds[["accuracy", "macro_f1"]].to_numpy()).all()


def test_assert_no_test_refuses_leaks(world):
    cat = world["catalog"]
    test_id = cat.loc[cat["split"] == "test", "id"].iloc[0]
    train_ids = list(cat.loc[cat["split"] == "train", "id"])
    heads.assert_no_test(train_ids, cat)
    with pytest.raises(heads.LeakError, match="test"):
        heads.assert_no_test(train_ids + [test_id], cat)
    with pytest.raises(heads.LeakError):
        heads.assert_no_test(train_ids, cat, allowed=("train", "test"))
    with pytest.raises(heads.LeakError):
        heads.assert_no_test(["not-in-catalog"], cat)


def test_text_classifier_runs(world):
    for cfg in (LOGREG, {**LOGREG, "type": "linear_svm", "scale": "l2"}):
        r = heads.text_classifier(*world["text"], world["catalog"], cfg, 0, n_splits=3, n_repeats=1)
        assert r["test"]["accuracy"] > 0.5
        assert r["cv"]["cv_folds"] == 3 and 0 <= r["cv"]["cv_macro_f1"] <= 1
        assert r["confusion"]["id"].isin(world["catalog"].query("split == 'test'")["id"]).all()
        again = heads.text_classifier(*world["text"], world["catalog"], cfg, 0, n_splits=3, n_repeats=1)
        assert again["test"] == r["test"]


def test_rounded_keeps_nesting():
    out = heads.rounded({"a": 0.123456, "per_class": {"Watches": {"f1": 0.987654}}, "n": 3, "s": "x"})
    assert out == {"a": 0.1235, "per_class": {"Watches": {"f1": 0.9877}}, "n": 3, "s": "x"}


def test_fusion_refuses_random_init_images():
    assert heads.require_real_weights({"weights": "imagenet"}, "vgg16.npz") == "imagenet"
    with pytest.raises(ValueError, match="random-init"):
        heads.require_real_weights({"weights": "random-init"}, "efficientnetb0.npz")
