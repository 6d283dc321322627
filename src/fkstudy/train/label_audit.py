"""Label audit: which catalogue labels look wrong, by confident learning (cleanlab) on out-of-fold
probabilities.

Every product is scored by a model that never saw it: stratified K-fold over the whole catalogue, a text
head and an image head fitted on the other folds, their probabilities pooled (geometric mean, equal
weights; text alone for a product without photo). cleanlab then ranks the products whose given label is
unlikely under those probabilities. This stage feeds no model: the official labels stay the study's
ground truth, nothing is relabelled.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from ..data.splits import common_ids
from ..files import align
from . import heads

ISSUE_COLUMNS = ["rank", "id", "split", "name", "given", "suggested", "suggested_probability", "given_probability",
                 "label_quality"]


def out_of_fold_proba(X, ids, y_by_id: dict, classes: list, cfg: heads.HeadParams, n_splits: int,
                      seed: int) -> pd.DataFrame:
    """Out-of-fold class probabilities [n, k] for the rows of X (ids): each fold's rows predicted by a head
    fitted on the other folds only (fit rows and predicted rows never overlap; checked)."""
    ids = np.asarray(ids)
    y = np.array([y_by_id[i] for i in ids])
    out = np.full((len(ids), len(classes)), np.nan)
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for fit_rows, held_rows in folds.split(ids, y):
        if set(ids[fit_rows]) & set(ids[held_rows]):
            raise AssertionError("a product is both fitted and scored in one fold")
        # the head's val rows (early stopping / C) are a slice of the fitting folds, never the held-out fold
        inner = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
        tr, va = next(inner.split(fit_rows, y[fit_rows]))
        fitted = heads.fit_head(X[fit_rows[tr]], y[fit_rows[tr]], X[fit_rows[va]], y[fit_rows[va]], cfg, seed)
        proba = fitted.model.predict_proba(np.asarray(X[held_rows], dtype=np.float64))
        order = [list(fitted.model.classes_).index(c) for c in classes]
        out[held_rows] = proba[:, order]
    return pd.DataFrame(out, index=ids, columns=classes)


def pooled(text: pd.DataFrame, image: pd.DataFrame) -> pd.DataFrame:
    """Geometric mean of text and image probabilities where a product has both, text alone otherwise."""
    both = text.index.intersection(image.index)
    out = text.copy()
    g = np.sqrt(np.clip(text.loc[both].to_numpy(), 1e-12, 1) * np.clip(image.loc[both].to_numpy(), 1e-12, 1))
    out.loc[both] = g / g.sum(axis=1, keepdims=True)
    return out


def find_issues(proba: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """cleanlab's label issues, ranked (most likely mislabelled first): given vs suggested category and
    their probabilities, cleanlab's label quality score, the product's split and name."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    classes = list(proba.columns)
    cat = catalog.set_index("id").loc[proba.index]
    labels = np.array([classes.index(c) for c in cat["category"]])
    P = proba.to_numpy()
    ranked = find_label_issues(labels=labels, pred_probs=P, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, P, method="self_confidence")
    rows = []
    for rank, i in enumerate(ranked, 1):
        suggested = int(P[i].argmax())
        rows.append({"rank": rank, "id": proba.index[i], "split": cat["split"].iloc[i], "name": cat["name"].iloc[i],
                     "given": classes[labels[i]], "suggested": classes[suggested],
                     "suggested_probability": float(P[i, suggested]), "given_probability": float(P[i, labels[i]]),
                     "label_quality": float(quality[i])})
    return pd.DataFrame(rows, columns=ISSUE_COLUMNS)


def pair_counts(issues: pd.DataFrame) -> pd.DataFrame:
    """How many flagged products per (given, suggested) category pair, most frequent first."""
    if issues.empty:
        return pd.DataFrame(columns=["given", "suggested", "products"])
    return (issues.groupby(["given", "suggested"]).size().rename("products").reset_index()
            .sort_values(["products", "given", "suggested"], ascending=[False, True, True], kind="stable"))


def accuracy_without_flagged(predictions: pd.DataFrame, issues: pd.DataFrame) -> dict:
    """Test accuracy of a model's test predictions (id, actual, predicted) officially and on the products
    cleanlab did not flag (the official number stays the study's)."""
    flagged = set(issues["id"])
    keep = ~predictions["id"].isin(flagged)
    ok = predictions["actual"] == predictions["predicted"]
    return {"test_accuracy": float(ok.mean()), "test_accuracy_unflagged": float(ok[keep].mean()),
            "test_flagged": int((~keep).sum()), "test_errors_flagged": int((~ok & ~keep).sum()),
            "test_errors": int((~ok).sum())}


def audit_features(text, image, catalog: pd.DataFrame, cfg: heads.HeadParams, n_splits: int, seed: int):
    """(pooled out-of-fold probabilities, issues) for text (X, ids) and image (X, ids) feature sets."""
    classes = sorted(catalog["category"].unique())
    y_by_id = dict(zip(catalog["id"], catalog["category"]))
    t_ids = common_ids(catalog, text[1])
    i_ids = common_ids(catalog, image[1])
    p_text = out_of_fold_proba(align(text[0], text[1], t_ids), t_ids, y_by_id, classes, cfg, n_splits, seed)
    p_image = out_of_fold_proba(align(image[0], image[1], i_ids), i_ids, y_by_id, classes, cfg, n_splits, seed)
    proba = pooled(p_text, p_image)
    return proba, find_issues(proba, catalog)
