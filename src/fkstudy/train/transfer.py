"""The `train` stage's data handling: which feature rows the head sees, leak-checked.

base:      train rows of the backbone's feature file (one per train photo).
augmented: those rows plus the precomputed augmented views of the train photos
           (view ids "<product id>#<k>"); val and test rows are never augmented.
Every row that enters the fit is checked to come from a train id (`heads.assert_no_test`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import heads

VARIANTS = ("base", "augmented")


@dataclass
class TrainData:
    splits: heads.Splits           # one row per photo, grouped by catalog split
    X_fit: np.ndarray              # rows the head is fitted on (train photos [+ their views])
    y_fit: np.ndarray
    fit_source_ids: np.ndarray     # the product id behind each fit row
    classes: list                  # sorted category names = the head's output order


def source_id(view_id: str) -> str:
    """"<product id>#<k>" -> "<product id>"."""
    sid, sep, k = str(view_id).rpartition("#")
    if not sep or not k.isdigit():
        raise ValueError(f"augmented view id {view_id!r} is not '<product id>#<view number>'")
    return sid


def prepare(X, ids, catalog: pd.DataFrame, variant: str, aug_X=None, aug_ids=None) -> TrainData:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    classes = sorted(catalog["category"].unique())
    s = heads.split_by_id(X, ids, catalog)
    if len(s.y_train) == 0 or len(s.y_val) == 0 or len(s.y_test) == 0:
        raise ValueError(f"train/val/test rows: {len(s.y_train)}/{len(s.y_val)}/{len(s.y_test)} — every split "
                         "needs photos with features")
    X_fit, y_fit, src = s.X_train, s.y_train, s.ids_train
    if variant == "augmented":
        if aug_X is None or aug_ids is None:
            raise ValueError("the augmented variant needs the augmented views file (stage augment)")
        src_ids = np.array([source_id(v) for v in np.asarray(aug_ids).tolist()])
        heads.assert_no_test(src_ids, catalog, ("train",))  # views of val/test photos would leak
        label = dict(zip(catalog["id"], catalog["category"]))
        X_fit = np.concatenate([s.X_train, np.asarray(aug_X, dtype=s.X_train.dtype)])
        y_fit = np.concatenate([s.y_train, [label[i] for i in src_ids]])
        src = np.concatenate([s.ids_train, src_ids])
    heads.assert_no_test(src, catalog, ("train",))
    return TrainData(s, X_fit, np.asarray(y_fit), np.asarray(src), classes)


def to_index(labels, classes) -> np.ndarray:
    pos = {c: i for i, c in enumerate(classes)}
    return np.array([pos[c] for c in np.asarray(labels).tolist()], dtype=np.int64)
