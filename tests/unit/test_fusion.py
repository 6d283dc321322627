"""The fusion protocol (fkstudy.train.fusion) on generated data: pooling rules, candidates, selection on
val / CV that can only match or beat the best single modality on its criterion, and no test id in any fit."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from fkstudy.files import align
from fkstudy import fusion_rules
from fkstudy.tracking import flatten
from fkstudy.train import fusion as F
from fkstudy.train import fusion_calibration, fusion_report
from fkstudy.train import heads
from fkstudy.train import name_head as NH
from fkstudy.train.heads import HeadParams

CLASSES = ["Baby Care", "Computers", "Home Decor & Festive Needs", "Watches"]


def head(**kw) -> HeadParams:
    """A head config: every field is required, so the ones a test does not care about get fixed values."""
    base = {"type": "logreg", "scale": "standard", "C": [1.0], "hidden": [16], "alpha": 1e-3, "lr": 1e-2,
            "batch_size": 32, "max_iter": 500, "patience": 5}
    return HeadParams.model_validate({**base, **kw})


LOGREG = head(type="logreg", scale="standard", C=[0.1, 1.0], max_iter=500)
KW = dict(modes=["concat", "average_proba", "geometric_proba"], weights=[0.25, 0.5, 0.75], n_splits=3, n_repeats=1)


@pytest.fixture(scope="module")
def world():
    """160 products, 4 classes: the text block carries most of the signal, the image block part of it;
    each 'file' lists its ids in its own order and 3 products have no image."""
    X, yi = make_classification(n_samples=160, n_features=20, n_informative=8, n_redundant=0, n_classes=4,
                                n_clusters_per_class=1, class_sep=1.2, random_state=1)
    ids = np.array([f"p{i:03d}" for i in range(160)])
    rng = np.random.default_rng(1)
    split = np.array(["train"] * 96 + ["val"] * 32 + ["test"] * 32)
    rng.shuffle(split)
    catalog = pd.DataFrame({"id": ids, "category": np.array(CLASSES)[yi], "split": split})
    text = X[:, :12] + rng.normal(scale=0.8, size=(160, 12))
    image = np.hstack([X[:, 6:14], rng.normal(size=(160, 5))])
    pt, pi = rng.permutation(160), rng.permutation(160)[:-3]
    return {"catalog": catalog, "text": (text[pt].astype(np.float32), ids[pt]),
            "image": (image[pi].astype(np.float32), ids[pi]), "test": set(ids[split == "test"])}


def _fit(world, **kw):
    return F.fit_fusion(*world["text"], *world["image"], world["catalog"], LOGREG, 0, **{**KW, **kw})


# ------------------------------------------------------------------------------------ pooling rules
def test_combine_proba_endpoints_rules_and_errors():
    rng = np.random.default_rng(0)
    pt, pi = rng.dirichlet(np.ones(4), 6), rng.dirichlet(np.ones(4), 6)
    for rule in fusion_rules.PROBA_RULES:
        np.testing.assert_allclose(fusion_rules.combine_proba(pt, pi, 1.0, rule), pt, atol=1e-9)
        np.testing.assert_allclose(fusion_rules.combine_proba(pt, pi, 0.0, rule), pi, atol=1e-9)
        np.testing.assert_allclose(fusion_rules.combine_proba(pt, pi, 0.3, rule).sum(1), 1.0)
    np.testing.assert_allclose(fusion_rules.combine_proba(pt, pi, 0.3, "average_proba"), 0.3 * pt + 0.7 * pi)
    geo = pt ** 0.3 * pi ** 0.7
    np.testing.assert_allclose(fusion_rules.combine_proba(pt, pi, 0.3, "geometric_proba"),
                               geo / geo.sum(1, keepdims=True))
    # a confident modality vetoes a class the other only half-believes: the geometric mean follows it
    a, b = np.array([[0.5, 0.5, 0.0]]), np.array([[0.0, 0.55, 0.45]])
    assert fusion_rules.combine_proba(a, b, 0.5, "geometric_proba").argmax() == 1
    with pytest.raises(ValueError, match="text weight"):
        fusion_rules.combine_proba(pt, pi, 1.5, "average_proba")
    with pytest.raises(ValueError, match="pooling rule"):
        fusion_rules.combine_proba(pt, pi, 0.5, "max")
    with pytest.raises(ValueError, match="shape"):
        fusion_rules.combine_proba(pt, pi[:, :3], 0.5, "average_proba")


def test_candidates_always_include_both_single_modalities():
    c = F.candidates(["average_proba", "concat"], [0.0, 0.5, 1.0, 0.25])
    assert [x["name"] for x in c] == ["text", "image", "average_proba@0.25", "average_proba@0.5", "concat"]
    assert c[0]["text_weight"] == 1.0 and c[1]["text_weight"] == 0.0
    assert [x["name"] for x in F.candidates([], [])] == ["text", "image"]
    with pytest.raises(ValueError, match="fusion mode"):
        F.candidates(["stacking"], [0.5])


# ------------------------------------------------------------------------------------ no leak
def test_no_test_id_reaches_any_fit(world, monkeypatch):
    """Every test row is NaN in both files, so any fit that saw one would fail; spies record every
    row selection (ids) and every fit (head, scaler, classifier): none holds a test id or row."""
    cat, test_ids = world["catalog"], world["test"]
    (T, t_ids), (I, i_ids) = world["text"], world["image"]
    T, I = T.copy(), I.copy()
    T[np.isin(t_ids, list(test_ids))] = np.nan
    I[np.isin(i_ids, list(test_ids))] = np.nan
    selected_ids, head_fits, estimator_fits = [], [], []
    real_align, real_fit_head = F.align, heads.fit_head
    real_lr, real_scaler = LogisticRegression.fit, StandardScaler.fit

    def rows_spy(X, ids, wanted, *a, **k):
        selected_ids.append(list(wanted))
        return real_align(X, ids, wanted, *a, **k)

    def fit_spy(X_train, y_train, X_val, y_val, cfg, seed):
        head_fits.append((len(X_train), len(X_val)))
        assert np.isfinite(X_train).all() and np.isfinite(X_val).all(), "a test row entered a fit"
        return real_fit_head(X_train, y_train, X_val, y_val, cfg, seed)

    def lr_spy(self, X, y, *a, **k):
        estimator_fits.append(len(X))
        assert np.isfinite(X).all()
        return real_lr(self, X, y, *a, **k)

    def scaler_spy(self, X, *a, **k):
        estimator_fits.append(len(X))
        assert np.isfinite(np.asarray(X, dtype=float)).all()
        return real_scaler(self, X, *a, **k)

    monkeypatch.setattr(F, "align", rows_spy)  # fusion's one id -> row join
    monkeypatch.setattr(heads, "fit_head", fit_spy)
    monkeypatch.setattr(LogisticRegression, "fit", lr_spy)
    monkeypatch.setattr(StandardScaler, "fit", scaler_spy)
    fit = F.fit_fusion(T, t_ids, I, i_ids, cat, LOGREG, 0, **KW)

    assert selected_ids and not test_ids & {i for ids in selected_ids for i in ids}
    pool = len(set(cat.loc[cat["split"] != "test", "id"]) & set(i_ids))
    assert len(head_fits) == 3 + 3 * 3  # text, image, concat on train; then per CV fold
    assert all(a + b <= pool for a, b in head_fits) and estimator_fits
    assert not set(fit.ids_train) & test_ids and not set(fit.ids_val) & test_ids
    assert fit.folds["accuracy"].notna().all() and fit.candidates["cv_accuracy"].notna().all()
    with pytest.raises(ValueError, match="(?i)nan"):  # only scoring the test rows touches them
        F.evaluate_fusion(fit, T, t_ids, I, i_ids, cat)


def test_choices_do_not_depend_on_test_rows(world):
    (T, t_ids), (I, i_ids) = world["text"], world["image"]
    T2, I2 = T.copy(), I.copy()
    T2[np.isin(t_ids, list(world["test"]))] = 5.0
    I2[np.isin(i_ids, list(world["test"]))] = -5.0
    a = _fit(world)
    b = F.fit_fusion(T2, t_ids, I2, i_ids, world["catalog"], LOGREG, 0, **KW)
    pd.testing.assert_frame_equal(a.candidates, b.candidates)
    assert a.selected == b.selected
    for name in a.heads:
        np.testing.assert_array_equal(a.heads[name].model.named_steps["clf"].coef_,
                                      b.heads[name].model.named_steps["clf"].coef_)


# ------------------------------------------------------------------------------------ selection
@pytest.mark.parametrize("select_by", F.SELECT_BY)
def test_selected_model_is_never_below_the_best_single_modality_on_its_criterion(world, select_by):
    fit = _fit(world, select_by=select_by)
    t = fit.candidates.set_index("name")
    crit = f"{select_by}_accuracy"
    assert t.loc[fit.selected["name"], crit] >= t.loc[["text", "image"], crit].max()
    assert t.loc[fit.selected["name"], crit] == t[crit].max()
    assert len(t) == 2 + 1 + 2 * 3 and t["val_accuracy"].between(0, 1).all()


def test_an_uninformative_image_leaves_the_text_model(world):
    """Image features of pure noise: fusion cannot help on CV, so the text model (w = 1) is kept or
    a fusion that ties or beats it on CV — never a worse one."""
    (I, i_ids), rng = world["image"], np.random.default_rng(7)
    noise = rng.normal(size=I.shape).astype(np.float32)
    fit = F.fit_fusion(*world["text"], noise, i_ids, world["catalog"], LOGREG, 0, **KW)
    t = fit.candidates.set_index("name")
    assert t.loc[fit.selected["name"], "cv_accuracy"] >= t.loc["text", "cv_accuracy"]
    assert t.loc["image", "cv_accuracy"] < 0.5


def test_select_breaks_ties_by_log_loss_then_order():
    table = pd.DataFrame({"name": ["text", "image", "average_proba@0.5"], "mode": ["text", "image", "average_proba"],
                          "text_weight": [1.0, 0.0, 0.5], "cv_accuracy": [0.9, 0.8, 0.9],
                          "cv_log_loss": [0.3, 0.5, 0.2]})
    assert F.select(table, "cv")["name"] == "average_proba@0.5"
    table.loc[2, "cv_log_loss"] = 0.3
    assert F.select(table, "cv")["name"] == "text"  # full tie: the simpler, earlier candidate
    assert F.select(table, "cv", "image") == {"name": "image", "mode": "image", "text_weight": 0.0}


def test_fit_fusion_is_deterministic_and_evaluates_test_once(world):
    a, b = _fit(world), _fit(world)
    pd.testing.assert_frame_equal(a.candidates, b.candidates)
    pd.testing.assert_frame_equal(a.folds, b.folds)
    ev = F.evaluate_fusion(a, *world["text"], *world["image"], world["catalog"])
    common = world["test"] & set(world["image"][1])
    assert set(ev["ids_test"]) == common and len(ev["ids_test"]) == len(common)
    assert set(ev["test"]) == set(a.candidates["name"])
    # the deployed path (fusion_proba on one candidate) gives the evaluated predictions
    cat = world["catalog"].set_index("id")
    P = fusion_rules.fusion_proba(a.models, a.selected, align(*world["text"], ev["ids_test"]),
                       align(*world["image"], ev["ids_test"]))
    np.testing.assert_array_equal(np.asarray(a.classes)[P.argmax(1)], ev["pred"][a.selected["name"]])
    assert (ev["y_test"] == cat.loc[ev["ids_test"], "category"].to_numpy()).all()


def test_select_by_cv_needs_cv_folds(world):
    with pytest.raises(ValueError, match="n_repeats"):
        _fit(world, n_repeats=0)
    fit = _fit(world, n_repeats=0, select_by="val")
    assert fit.folds.empty and "cv_accuracy" not in fit.candidates


# ------------------------------------------------------------------------------------ reporting
def test_summary_metric_names_are_plain_words_and_selection_is_consistent(world):
    fit = _fit(world)
    ev = F.evaluate_fusion(fit, *world["text"], *world["image"], world["catalog"])
    m = fusion_report.summary(fit, ev)
    for key in flatten(m):  # `dvc metrics diff` keys: words and dots only
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", key), key
    sel = fit.selected["name"]
    assert m["fusion_selected"] == sel and m["fusion_test_accuracy"] == ev["test"][sel]["accuracy"]
    assert m["fusion_cv_accuracy_minus_best_single"] >= 0
    assert m["best_single_test_accuracy"] == max(m["text_test_accuracy"], m["image_test_accuracy"])
    assert set(m["cv"]) == {"text", "image", "concat", "average_proba", "geometric_proba", "fusion"}
    assert set(m["fusion_per_class"]) == {"baby_care", "computers", "home_decor_and_festive_needs", "watches"}
    table = fusion_report.candidate_table(fit, ev)
    assert table["selected"].sum() == 1 and table.loc[table["selected"], "name"].item() == sel
    curves = fusion_report.weight_curves(table)
    assert list(curves["text_weight"]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curves.loc[0, "average_proba_cv_accuracy"] == table.set_index("name").loc["image", "cv_accuracy"]
    assert curves["geometric_proba_test_accuracy"].notna().all()


def test_concat_head_takes_the_raw_concatenation(world):
    fit = _fit(world, modes=["concat"])
    model = fit.heads["concat"].model
    assert list(model.named_steps) == ["blocks", "scale", "clf"]
    T5, I5 = align(*world["text"], fit.ids_train[:5]), align(*world["image"], fit.ids_train[:5])
    assert model.predict_proba(fusion_rules.concat_features(T5, I5)).shape == (5, len(CLASSES))
    # blocks standardised with train statistics, each divided by sqrt(its width)
    Z = model.named_steps["blocks"].transform(fusion_rules.concat_features(T5, I5))
    dt = T5.shape[1]
    scaler = model.named_steps["blocks"].named_transformers_["text"]
    np.testing.assert_allclose(Z[:, :dt], (T5 - scaler.mean_) / scaler.scale_ / np.sqrt(dt))


def test_shown_folds_and_bundle_config(world):
    fit = _fit(world)
    ev = F.evaluate_fusion(fit, *world["text"], *world["image"], world["catalog"])
    shown = fusion_report.shown_folds(fit, KW["modes"])
    roles = ["text", "image", *KW["modes"], "fusion"]
    assert list(dict.fromkeys(shown["model"])) == roles and (shown.groupby("model").size() == 3).all()
    sel = fit.folds[fit.folds["model"] == fit.selected["name"]]
    np.testing.assert_array_equal(shown.loc[shown["model"] == "fusion", "accuracy"], sel["accuracy"])
    best_avg = F.select(fit.candidates, fit.select_by, "average_proba")["name"]
    np.testing.assert_array_equal(shown.loc[shown["model"] == "average_proba", "accuracy"],
                                  fit.folds.loc[fit.folds["model"] == best_avg, "accuracy"])
    m = fusion_report.summary(fit, ev)
    i_meta = {"extractor": "efficientnet_lite0", "weights": "imagenet", "sha256": "ab" * 32, "n_params": 1,
              "image_cache": {"size": 224}}
    cfg = fusion_report.bundle_config(fit, m, "bert", "efficientnet_lite0",
                                      {"method": "bert", "params": {"input": "raw"}}, i_meta, 12, 13)
    assert cfg["classes"] == fit.classes and cfg["selected"] == fit.selected and cfg["select_by"] == "cv"
    assert cfg["scores"]["test_accuracy"] == m["fusion_test_accuracy"]
    assert cfg["text"] == {"set": "bert", "method": "bert", "params": {"input": "raw"}, "source": None, "dim": 12}
    assert cfg["image"]["set"] == "efficientnet_lite0" and cfg["image"]["dim"] == 13
    assert cfg["image"]["sha256"] == "ab" * 32 and "n_params" not in cfg["image"]  # only what rebuilds features


# ------------------------------------------------------------------------------------ name-only head
def _names(world):
    """Name-only features: a noisier copy of the text block (a title says less than a description)."""
    T, ids = world["text"]
    rng = np.random.default_rng(7)
    return (T + rng.normal(scale=1.0, size=T.shape)).astype(np.float32), ids


def test_name_head_never_fits_a_test_row_and_scores_test_once(world, monkeypatch):
    cat, test_ids = world["catalog"], world["test"]
    N, n_ids = _names(world)
    N = N.copy()
    N[np.isin(n_ids, list(test_ids))] = np.nan        # a fit that saw a test row would fail
    real_fit_head, fits = heads.fit_head, []

    def fit_spy(X_train, y_train, X_val, y_val, cfg, seed):
        assert np.isfinite(X_train).all() and np.isfinite(X_val).all(), "a test row entered a fit"
        fits.append(len(X_train))
        return real_fit_head(X_train, y_train, X_val, y_val, cfg, seed)

    monkeypatch.setattr(heads, "fit_head", fit_spy)
    nf = NH.fit(N, n_ids, cat, LOGREG, 0, n_splits=3, n_repeats=2)
    # train (val picks C), 3 folds x 2 repeats, then the served head on train+val: none with a test row
    pool = len(nf.ids_train) + len(nf.ids_val)
    assert len(fits) == 8 and fits[0] == len(nf.ids_train) and fits[-1] == pool
    assert all(abs(f - pool * 2 / 3) <= 1 for f in fits[1:-1])   # each CV fold fits 2 of 3 folds of train+val
    assert not (set(nf.ids_train) | set(nf.ids_val)) & test_ids
    assert len(nf.folds) == 6 and nf.oof.shape == (len(nf.y), len(CLASSES))
    np.testing.assert_allclose(nf.oof.sum(axis=1), 1.0)   # every train+val row scored once out of fold
    fit = _fit(world)
    with pytest.raises(ValueError, match="(?i)nan"):        # only scoring the test rows touches them
        NH.evaluate(nf, fit.heads["text"].model, N, n_ids, cat)


def test_name_head_is_summarised_and_calibrated_as_its_own_role(world):
    fit, (N, n_ids) = _fit(world), _names(world)
    ev = F.evaluate_fusion(fit, *world["text"], *world["image"], world["catalog"])
    nf = NH.fit(N, n_ids, world["catalog"], LOGREG, 0, n_splits=3, n_repeats=1)
    nev = NH.evaluate(nf, fit.heads["text"].model, N, n_ids, world["catalog"])
    assert len(nev["y_test"]) == len(world["test"])
    m = NH.summary(nf, nev, "mpnet_name")
    assert m["set"] == "mpnet_name" and 0 <= m["test_accuracy"] <= 1 and 0 <= m["text_head_test_accuracy"] <= 1
    assert m["cv_folds"] == 3 and "c" in m
    cal, tables = fusion_calibration.calibrate(fit, ev, 0.9, 10, name=(nf, nev))
    assert set(cal) == {"selected", "text", "name"} and cal["name"]["temperature"] > 0
    assert set(fusion_calibration.calibrate(fit, ev, 0.9, 10)[0]) == {"selected", "text"}


def test_name_set_must_be_the_text_encoder_on_the_name():
    t = {"params": {"field": "both", "input": "raw", "model_dir": "", "max_length": 128, "batch_size": 32,
                    "precision": "float32"}}
    good = {"params": {**t["params"], "field": "name"}}
    assert NH.check_set("mpnet", t, "mpnet_name", good) == {"set": "mpnet_name", "params": good["params"]}
    with pytest.raises(ValueError, match="max_length"):
        NH.check_set("mpnet", t, "mpnet_name", {"params": {**good["params"], "max_length": 64}})
    with pytest.raises(ValueError, match="text_features.use"):   # another encoder: the server could not rebuild it
        NH.check_set("mpnet", t, "use", good)


@pytest.fixture(autouse=True)
def blas_threads():
    """One BLAS thread: results independent of the machine's core count, and no oversubscription."""
    with threadpool_limits(limits=1):
        yield
