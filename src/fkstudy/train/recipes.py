"""Training recipes on cached features: a text classifier (fit on train, C on val, test once, repeated
CV on train+val) and a head over several seeds (mean, std, t-interval; seeds in parallel processes). Pure
functions: the stages log to MLflow and write the files. Every fit takes the catalog split and refuses a test id (`LeakError`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.splits import Splits, assert_no_test, split_by_id
from ..evaluate.metrics import confusion_table, scores, t_interval
from ..labels import best_target, fit_labels, predict_top, rollup
from . import heads
from .cv import fixed, repeated_cv
from .heads import Fitted, HeadParams


def guarded_fit(d: Splits, catalog: pd.DataFrame, cfg: HeadParams, seed: int, target: str = "category") -> Fitted:
    """fit_head on the train rows (val stops / chooses), after checking no id comes from another split; fitted on
    the `target` labels (fkstudy.labels) of those rows."""
    assert_no_test(d.ids_train, catalog, ("train",))
    assert_no_test(d.ids_val, catalog, ("val",))
    y_train, y_val = (d.y_train, d.y_val) if target == "category" else \
        (fit_labels(catalog, d.ids_train, target), fit_labels(catalog, d.ids_val, target))
    return heads.fit_head(d.X_train, y_train, d.X_val, y_val, cfg, seed)


def cross_validate(X, ids, y, catalog: pd.DataFrame, cfg: HeadParams, seed: int, n_splits: int, n_repeats: int,
                   classes=None, name: str = "model", target: str = "category") -> pd.DataFrame:
    """Repeated stratified K-fold on the train+val ids only (stratified on the top-level labels `y`): accuracy
    and macro-F1 per fold at the top level, each fold's head fitted on the `target` labels of its rows.

    Hyper-parameters are used as given (C: the first of the list); the fold's own held-out rows stop the MLP.
    """
    ids, y, X = np.asarray(ids), np.asarray(y), np.asarray(X)
    pool = catalog.set_index("id").loc[ids, "split"].isin(["train", "val"]).to_numpy()
    ids, y, X = ids[pool], y[pool], X[pool]
    assert_no_test(ids, catalog, allowed=("train", "val"))
    classes = classes if classes is not None else np.unique(y)
    cfg1 = cfg.model_copy(update={"C": cfg.C[:1]})
    y_fit = y if target == "category" else fit_labels(catalog, ids, target)

    def fit_predict(tr, te):
        f = heads.fit_head(X[tr], y_fit[tr], X[te], y_fit[te], cfg1, seed)
        proba, model_classes = rollup(f.model.predict_proba(X[te]), f.model.classes_)
        return model_classes, {name: proba}

    def score(y_te, proba, model_classes):
        m = scores(y_te, proba, model_classes, classes, per_class=False)
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

    return repeated_cv(y, fit_predict, n_splits=n_splits, n_repeats=n_repeats, seed=seed, score=score)[0]


def cv_summary(folds: pd.DataFrame) -> dict:
    """Per model: mean and std of the fold accuracies and macro-F1s, and the number of folds."""
    out = {}
    for name, g in folds.groupby("model", sort=True):
        out[name] = {"cv_accuracy": float(g["accuracy"].mean()), "cv_accuracy_std": float(g["accuracy"].std(ddof=1)),
                     "cv_macro_f1": float(g["macro_f1"].mean()), "cv_macro_f1_std": float(g["macro_f1"].std(ddof=1)),
                     "cv_folds": int(len(g))}
    return out


def text_classifier(X, ids, catalog: pd.DataFrame, cfg: HeadParams, seed: int, n_splits: int = 5,
                    n_repeats: int = 2, targets=("category",)) -> dict:
    """A head on one feature set: for each of `targets` (fkstudy.labels: the top-level category, or the category
    tree's second level read at the top level), fitted on train (val picks C by the accuracy on the head's own
    labels) and cross-validated on train+val with that C, scored at the top level; the target with the best CV accuracy is kept (ties: the first listed), and only its head
    predicts the test rows, once. `cv_by_target` holds every target's CV summary."""
    d = split_by_id(X, ids, catalog)
    classes = sorted(catalog["category"].unique())
    pool_ids = np.concatenate([d.ids_train, d.ids_val])
    pool_X = np.concatenate([d.X_train, d.X_val])
    pool_y = np.concatenate([d.y_train, d.y_val])
    tried = {}
    for target in targets:
        f = guarded_fit(d, catalog, cfg, seed, target)
        folds = cross_validate(pool_X, pool_ids, pool_y, catalog, fixed(cfg, f), seed, n_splits, n_repeats,
                               classes=classes, name="text", target=target)
        tried[target] = (f, folds, cv_summary(folds)["text"])
    target = best_target({t: round(tried[t][2]["cv_accuracy"], 10) for t in targets})
    f, folds, cv = tried[target]
    X_test = np.asarray(d.X_test, dtype=np.float64)
    test = scores(d.y_test, *rollup(f.model.predict_proba(X_test), f.model.classes_), classes)
    pred = predict_top(f.model, X_test)
    return {"fitted": f, "test": test, "cv": cv, "folds": folds, "target": target,
            "cv_by_target": {t: tried[t][2] for t in targets},
            "confusion": confusion_table(d.ids_test, d.y_test, pred)}


def _one_seed(data: Splits, cfg: HeadParams, s: int, classes) -> tuple[dict, Fitted, dict]:
    """One seed's fit and scores on one BLAS thread: (per-seed row, fitted head, test metrics). The same
    arithmetic in a worker process as in this one (small matmuls gain nothing from a second thread and
    collapse when another process holds the core)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        fitted = heads.fit_head(data.X_train, data.y_train, data.X_val, data.y_val, cfg, s)
        m = heads.evaluate(fitted.model, data.X_test, data.y_test, classes)
        row = {"seed": s, "test_accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
               "val_accuracy": heads.evaluate(fitted.model, data.X_val, data.y_val, classes)["accuracy"],
               **{k: v for k, v in fitted.chosen.items() if isinstance(v, (int, float))}}
    return row, fitted, m


def multiseed(data: Splits, cfg: HeadParams, seed: int, n_seeds: int, classes, on_seed=None,
              n_jobs: int = 1) -> dict:
    """The same head over seeds seed..seed+n-1; mean/std/95% t-interval of test accuracy and macro-F1.

    Each fit runs on one BLAS thread; with n_jobs > 1 the seeds run in up to n_jobs fresh worker processes
    (concurrent.futures, spawn: no fork of a process holding BLAS / OpenMP threads; arguments and results travel
    between the processes of this call, no file is read) — the same numbers as n_jobs=1, seed by seed.
    `on_seed(seed, fitted, test_metrics)` is called in this process, in seed order, once every seed is done
    (the stage logs MLflow runs there).
    """
    seeds = list(range(seed, seed + n_seeds))
    if n_jobs > 1 and n_seeds > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(n_jobs, n_seeds), mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_one_seed, [data] * n_seeds, [cfg] * n_seeds, seeds, [classes] * n_seeds))
    else:
        done = [_one_seed(data, cfg, s, classes) for s in seeds]
    if on_seed is not None:
        for s, (_, fitted, m) in zip(seeds, done):
            on_seed(s, fitted, m)
    table = pd.DataFrame([row for row, _, _ in done])
    return {"per_seed": table,
            "test_accuracy": t_interval(table["test_accuracy"]),
            "macro_f1": t_interval(table["macro_f1"])}


def require_real_weights(meta: dict, path: str) -> str:
    """A supervised comparison needs a real image representation: refuse features of random-init weights."""
    from ..errors import StudyError

    weights = meta.get("weights", "n/a")
    if weights == "random-init":
        raise StudyError(f"{path} was extracted with random-init weights; fusion needs a real image representation "
                         f"(provide the pretrained weights, or set fusion.image_set to vgg16/efficientnet_lite0)")
    return weights
