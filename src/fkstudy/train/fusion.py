"""Text + image late fusion, chosen by protocol: every candidate (each modality alone, concat, and
average / geometric probability pooling at each text weight) is scored on validation and by repeated
stratified CV over train+val; one is selected by `select_by` and only then is the test split predicted.

Because the single modalities are candidates themselves (text weight 1 and 0), the selected model
is never worse than the best single modality *on the selection criterion*; on test it can still
land below by chance (that is reported, not hidden).

Leak-free by construction: `fit_fusion` takes the train and val rows out of the feature files and
never holds a test row, so no fit, no CV fold and no choice can see one (LeakError guards on top).
`evaluate_fusion` predicts the test rows once with the fitted heads.

The roles live apart: the pooling rules the served model shares (fkstudy.fusion_rules), the heads
(fusion_heads), the cross-validation loop (cv), calibration (fusion_calibration) and the metrics, tables and
bundle config (fusion_report). This module is the protocol: candidates, fit + CV + selection, test.

Pure functions (no file or MLflow I/O). Every fit goes through `heads.fit_head` (tests spy on it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.splits import assert_no_test, common_ids
from ..evaluate.metrics import scores
from ..files import align
from ..fusion_rules import MODES, PROBA_RULES, candidate_proba, head_probas
from ..labels import best_target, fit_labels, top_classes
from . import heads
from .cv import FOLD_COLUMNS, fixed, fold_scores, repeated_cv
from .fusion_heads import fit_heads

SELECT_BY = ("cv", "val")


# ------------------------------------------------------------------------------------ candidates
def candidates(modes, weights) -> list[dict]:
    """text, image, then per mode: concat, or `<rule>@<w>` for every weight strictly inside (0, 1)."""
    out = [{"name": "text", "mode": "text", "text_weight": 1.0},
           {"name": "image", "mode": "image", "text_weight": 0.0}]
    for mode in modes:
        if mode == "concat":
            out.append({"name": "concat", "mode": "concat", "text_weight": None})
        elif mode in PROBA_RULES:
            out += [{"name": f"{mode}@{w:g}", "mode": mode, "text_weight": float(w)}
                    for w in sorted(set(float(w) for w in weights)) if 0.0 < w < 1.0]
        else:
            raise ValueError(f"fusion mode must be one of {MODES}, got {mode!r}")
    return out


# ------------------------------------------------------------------------------------ protocol
@dataclass
class FusionFit:
    heads: dict                # "text" / "image" / "concat" -> heads.Fitted (fit on train, chosen on val)
    candidates: pd.DataFrame   # one row per candidate: name, mode, text_weight, val_*, cv_*
    selected: dict             # the chosen candidate: name, mode, text_weight
    folds: pd.DataFrame        # CV on train+val: fold, model (candidate name), accuracy, macro_f1, log_loss
    classes: list
    select_by: str
    ids_train: np.ndarray
    ids_val: np.ndarray
    oof: dict | None = None    # candidate name -> out-of-fold probabilities of train+val (first CV repeat)
    y: np.ndarray | None = None  # the train+val labels, in `oof`'s row order
    target: str = "category"   # the labels the heads were fitted on (fkstudy.labels)

    @property
    def models(self) -> dict:
        return {k: f.model for k, f in self.heads.items()}


def fit_fusion(text_X, text_ids, image_X, image_ids, catalog: pd.DataFrame, cfg: heads.HeadParams, seed: int, *,
               modes=("concat", "average_proba", "geometric_proba"),
               weights=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
               n_splits: int = 5, n_repeats: int = 2, select_by: str = "cv", target: str = "category") -> FusionFit:
    """Fit the heads on train (val picks C / stops the MLP), score every candidate on val and by
    repeated stratified K-fold CV over train+val (the val-chosen hyper-parameters refitted per fold),
    and select one: highest `select_by` accuracy, ties -> lower log loss, then the earlier candidate
    (single modalities first). Only ids present in both files and in the train/val splits are used.
    The heads are fitted on the `target` labels (fkstudy.labels: the top level, or the category tree's level 2
    read at the top level); every score is a top-level one.
    """
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {SELECT_BY}, got {select_by!r}")
    if select_by == "cv" and n_repeats < 1:
        raise ValueError("select_by='cv' needs n_repeats >= 1")
    cands = candidates(modes, weights)
    ids = common_ids(catalog, text_ids, image_ids)
    split = catalog.set_index("id").loc[ids, "split"].to_numpy()
    ids = ids[np.isin(split, ("train", "val"))]          # from here on, no test row exists in this function
    assert_no_test(ids, catalog, ("train", "val"))
    cat = catalog.set_index("id").loc[ids]
    T, I = align(text_X, text_ids, ids).astype(np.float64), align(image_X, image_ids, ids).astype(np.float64)
    y, split = cat["category"].to_numpy(), cat["split"].to_numpy()
    tr, va = split == "train", split == "val"
    assert_no_test(ids[tr], catalog, ("train",))
    assert_no_test(ids[va], catalog, ("val",))
    classes = sorted(catalog["category"].unique())
    y_fit = y if target == "category" else fit_labels(catalog, ids, target)

    names = ["text", "image"] + (["concat"] if any(c["mode"] == "concat" for c in cands) else [])
    fitted = fit_heads(T[tr], I[tr], y_fit[tr], T[va], I[va], y_fit[va], {n: cfg for n in names}, seed)
    val_p = head_probas({k: f.model for k, f in fitted.items()}, T[va], I[va])
    model_classes = top_classes(fitted["text"].model.classes_)
    rows = []
    for c in cands:
        s = fold_scores(y[va], candidate_proba(c, val_p), model_classes)
        rows.append({**c, "val_accuracy": s["accuracy"], "val_macro_f1": s["macro_f1"], "val_log_loss": s["log_loss"]})
    table = pd.DataFrame(rows)

    folds, oof = _cv(T, I, y, y_fit, fitted, cfg, cands, seed, n_splits, n_repeats, model_classes) \
        if n_repeats > 0 else (pd.DataFrame(columns=FOLD_COLUMNS), None)
    if len(folds):
        g = folds.groupby("model", sort=False)
        cv = pd.DataFrame({"cv_accuracy": g["accuracy"].mean(), "cv_accuracy_std": g["accuracy"].std(ddof=1),
                           "cv_macro_f1": g["macro_f1"].mean(), "cv_log_loss": g["log_loss"].mean()})
        table = table.join(cv, on="name")
    selected = select(table, select_by)
    return FusionFit(fitted, table, selected, folds, classes, select_by, ids[tr], ids[va], oof, y, target)


def fit_fusion_targets(*args, targets=("category",), **kwargs) -> tuple[FusionFit, dict]:
    """`fit_fusion` once per target; kept: the fit whose selected candidate has the best `select_by` accuracy
    (ties: lower log loss, then the first target listed). Returns (that fit, {target: its selected candidate's
    select_by accuracy})."""
    fits = {t: fit_fusion(*args, target=t, **kwargs) for t in targets}

    def selected(f: FusionFit, what: str) -> float:
        return float(f.candidates.set_index("name").loc[f.selected["name"], f"{f.select_by}_{what}"])

    best = best_target({t: (round(selected(f, "accuracy"), 10), -round(selected(f, "log_loss"), 10))
                        for t, f in fits.items()})
    return fits[best], {t: selected(f, "accuracy") for t, f in fits.items()}


def _cv(T, I, y, y_fit, fitted: dict, cfg: heads.HeadParams, cands: list, seed: int, n_splits: int,
        n_repeats: int, model_classes) -> tuple[pd.DataFrame, dict]:
    """Per-fold scores of every candidate (its heads refitted on the other folds' `y_fit` labels with the
    val-chosen C; folds stratified and scored on the top-level `y`), and each candidate's out-of-fold
    probabilities of the first repeat (cv.repeated_cv)."""
    cfgs = {name: fixed(cfg, f) for name, f in fitted.items()}

    def fit_predict(a, b):
        fold_heads = fit_heads(T[a], I[a], y_fit[a], T[b], I[b], y_fit[b], cfgs, seed)
        probas = head_probas({k: f.model for k, f in fold_heads.items()}, T[b], I[b])
        return model_classes, {c["name"]: candidate_proba(c, probas) for c in cands}

    return repeated_cv(y, fit_predict, n_splits=n_splits, n_repeats=n_repeats, seed=seed)


def select(table: pd.DataFrame, select_by: str, mode: str | None = None) -> dict:
    """The best candidate (of one `mode` when given) on `select_by`: accuracy, then log loss, then order."""
    acc, loss = f"{select_by}_accuracy", f"{select_by}_log_loss"
    t = table if mode is None else table[table["mode"] == mode]
    if t.empty:
        raise ValueError(f"no fusion candidate of mode {mode!r}")
    key = pd.DataFrame({"acc": t[acc].round(10), "loss": t[loss].round(10)}, index=t.index)
    best = key.sort_values(["acc", "loss"], ascending=[False, True], kind="stable").index[0]
    row = t.loc[best]
    w = row["text_weight"]
    return {"name": row["name"], "mode": row["mode"], "text_weight": None if pd.isna(w) else float(w)}


def evaluate_fusion(fit: FusionFit, text_X, text_ids, image_X, image_ids, catalog: pd.DataFrame) -> dict:
    """Test rows (present in both files) predicted once by each fitted head; every candidate scored.

    Returns ids_test, y_test, `test` {candidate name: evaluate.metrics.scores(...)} and `pred`
    {candidate name: predicted labels}.
    """
    ids = common_ids(catalog, text_ids, image_ids)
    ids = ids[catalog.set_index("id").loc[ids, "split"].to_numpy() == "test"]
    y = catalog.set_index("id").loc[ids, "category"].to_numpy()
    probas = head_probas(fit.models, align(text_X, text_ids, ids), align(image_X, image_ids, ids))
    model_classes = np.asarray(top_classes(fit.heads["text"].model.classes_))
    test, pred, proba = {}, {}, {}
    for c in fit.candidates[["name", "mode", "text_weight"]].to_dict("records"):
        p = proba[c["name"]] = candidate_proba(c, probas)
        test[c["name"]] = scores(y, p, model_classes, fit.classes)
        pred[c["name"]] = model_classes[p.argmax(1)]
    return {"ids_test": ids, "y_test": y, "test": test, "pred": pred, "proba": proba}
