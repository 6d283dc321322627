"""The label a head is fitted on, and how its answer is read at the study's level (the top-level category).

target `category`     the top-level category (7 classes): the study's target, as before
target `category_l2`  the second level of each product's `product_category_tree` (59 sub-categories in train+val,
                      e.g. "Kitchen & Dining >> Coffee Mugs"): a finer target whose classes are tighter clusters in
                      a text embedding; the head's probabilities are read back at the top level by summing each
                      top category's sub-categories (`rollup`)

A fine label is written "<top> >> <sub>" so that its top level is a pure function of the label (`top`): the
fitted model carries its own mapping (its `classes_`), the served model needs nothing else, and a plain
top-level model passes through every function here unchanged (the same array, not a copy).

Only the labels of the rows being fitted are ever looked up (`fit_labels` takes the ids of the fit): a test
product's tree reaches no fit. Top level (not in train/ nor predict/): numpy only, shared by both.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

TARGETS = ("category", "category_l2")
SEP = " >> "


def fit_labels(catalog: pd.DataFrame, ids, target: str) -> np.ndarray:
    """The `target` labels of the products `ids` (catalog order of `ids`): top-level names, or "<top> >> <sub>"
    (a product whose tree stops at the top level keeps its top-level name)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    rows = catalog.set_index("id").loc[np.asarray(ids)]
    top_names = rows["category"].to_numpy(dtype=object)
    if target == "category":
        return top_names
    sub = rows[target].fillna("").to_numpy(dtype=object)
    return np.asarray([t if not s else f"{t}{SEP}{s}" for t, s in zip(top_names, sub)], dtype=object)


def top(labels) -> np.ndarray:
    """The top level of each label ("<top> >> <sub>" -> "<top>"; a top-level label is itself)."""
    return np.asarray([str(v).split(SEP, 1)[0] for v in np.asarray(labels)], dtype=object)


def is_flat(classes) -> bool:
    return not any(SEP in str(c) for c in classes)


def rollup(proba, classes) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities summed per top-level category, the top-level classes in sorted order). A model fitted on
    top-level labels comes back as it is (`proba`, `classes`)."""
    classes = np.asarray(classes)
    if is_flat(classes):
        return proba, classes
    parents = top(classes)
    tops = np.asarray(sorted(set(parents)), dtype=object)
    p = np.asarray(proba, dtype=np.float64)
    out = np.zeros((p.shape[0], len(tops)))
    for j, t in enumerate(tops):
        out[:, j] = p[:, parents == t].sum(axis=1)
    return out, tops


def top_classes(classes) -> list:
    """The top-level classes a model fitted on `classes` answers in (`rollup`'s column order)."""
    return list(rollup(np.zeros((0, len(classes))), classes)[1])


def proba_top(model, X) -> np.ndarray:
    """A fitted classifier's probabilities at the top level (columns in `top_classes(model.classes_)` order)."""
    return rollup(model.predict_proba(X), model.classes_)[0]


def best_target(scores: dict) -> str:
    """The target whose score is highest (a number, or a tuple compared in order); ties go to the first listed."""
    order = list(scores)
    return max(order, key=lambda t: (scores[t], -order.index(t)))


def predict_top(model, X) -> np.ndarray:
    """Top-level predictions of a fitted classifier (`model.predict` for a top-level model: unchanged)."""
    if is_flat(model.classes_):
        return model.predict(X)
    proba, tops = rollup(model.predict_proba(X), model.classes_)
    return tops[proba.argmax(axis=1)]
