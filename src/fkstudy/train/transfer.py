"""Transfer learning (the `train` stage): which feature rows the head sees, leak-checked, and the whole
recipe — head on cached backbone features, optional end-to-end fine-tuning, evaluation on val and test.

base:      train rows of the backbone's feature file (one per train photo).
augmented: those rows plus the precomputed augmented views of the train photos
           (view ids "<product id>#<k>"); val and test rows are never augmented.
finetuned: the augmented variant's head (stage train@<b>-augmented), then the backbone's last layers trained
           on the train photos and the same fixed views, as cached activations: fkstudy.train.fine_tune
           (stage fine_tune; this module does not import it, so the train stages do not depend on it).
Every row that enters the fit is checked to come from a train id (`assert_no_test`).
TensorFlow is imported inside fkstudy.train.keras_head's functions.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.splits import Splits, assert_no_test, split_by_id
from ..errors import StudyError
from ..evaluate.metrics import scores
from . import keras_head

VARIANTS = ("base", "augmented", "finetuned")
HEAD_VARIANTS = ("base", "augmented")   # stage train: a head fitted on cached features
WITH_VIEWS = ("augmented",)   # the head is fitted on the train photos + their augmented views' features


@dataclass
class TrainData:
    splits: Splits                 # one row per photo, grouped by catalog split
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
    s = split_by_id(X, ids, catalog)
    if len(s.y_train) == 0 or len(s.y_val) == 0 or len(s.y_test) == 0:
        raise ValueError(f"train/val/test rows: {len(s.y_train)}/{len(s.y_val)}/{len(s.y_test)} — every split "
                         "needs photos with features")
    X_fit, y_fit, src = s.X_train, s.y_train, s.ids_train
    if variant in WITH_VIEWS:
        if aug_X is None or aug_ids is None:
            raise ValueError(f"the {variant} variant needs the augmented views file (stage augment)")
        src_ids = np.array([source_id(v) for v in np.asarray(aug_ids).tolist()])
        label = dict(zip(catalog["id"], catalog["category"]))
        X_fit = np.concatenate([s.X_train, np.asarray(aug_X, dtype=s.X_train.dtype)])
        y_fit = np.concatenate([s.y_train, [label[i] for i in src_ids]])
        src = np.concatenate([s.ids_train, src_ids])
    assert_no_test(src, catalog, ("train",))  # every fit row, views included: views of val/test photos would leak
    return TrainData(s, X_fit, np.asarray(y_fit), np.asarray(src), classes)


def to_index(labels, classes) -> np.ndarray:
    pos = {c: i for i, c in enumerate(classes)}
    return np.array([pos[c] for c in np.asarray(labels).tolist()], dtype=np.int64)


@dataclass
class TrainResult:
    data: TrainData
    head: object                    # the Keras head (features -> probabilities)
    full: object | None             # Keras backbone + head in one model (Keras backbones), else None
    history: pd.DataFrame
    info: dict                      # best_epoch, epochs_run (and the fine-tuning phase's, when it ran)
    unfreeze: int                   # backbone layers fine-tuned (0 = frozen)
    test: dict                      # evaluate.metrics.scores on test
    val: dict
    proba: np.ndarray               # test probabilities, columns in `classes` order
    timings: dict = field(default_factory=dict)

    @property
    def pred(self) -> np.ndarray:
        return np.asarray(self.data.classes)[self.proba.argmax(1)]

    def examples(self, n: int, seed: int) -> np.ndarray:
        """Test rows of the n most confident correct, then the n most confident incorrect predictions."""
        from .gradcam import select_examples

        y_true = to_index(self.data.splits.y_test, self.data.classes)
        correct, incorrect = select_examples(y_true, self.proba.argmax(1), self.proba, n, seed)
        return np.concatenate([correct, incorrect])


def train_classifier(backbone: str, variant: str, d: TrainData, cfg, seed: int, *, load_backbone=None) -> TrainResult:
    """The transfer-learning classifier of one backbone, variant base or augmented, on prepared rows `d`.

    1. The Keras head is fitted on the cached backbone features (train [+ views]), early-stopped on val.
    2. Keras backbones (`load_backbone()` -> the frozen backbone model): assembled with the head into one model;
       torch backbones keep the head alone.
    3. Val and test are scored once, by the head on the features.
    The finetuned variant is fkstudy.train.fine_tune.fine_tune_classifier.
    """
    if variant == "finetuned":
        raise ValueError(f"{backbone}: the finetuned variant is fkstudy.train.fine_tune.fine_tune_classifier "
                         "(stage fine_tune)")
    s, classes = d.splits, d.classes
    t0 = time.perf_counter()
    head, hist, info = keras_head.fit_head(d.X_fit, to_index(d.y_fit, classes), s.X_val, to_index(s.y_val, classes),
                                           len(classes), cfg, seed)
    timings = {"head_fit_seconds": time.perf_counter() - t0}
    full = keras_head.assemble(load_backbone(), head, name=f"{backbone}_{variant}") if load_backbone else None
    timings["fit_seconds"] = time.perf_counter() - t0
    proba, val_proba = keras_head.predict_proba(head, s.X_test), keras_head.predict_proba(head, s.X_val)
    return TrainResult(d, head, full, hist, info, 0, scores(s.y_test, proba, classes, classes),
                       scores(s.y_val, val_proba, classes, classes), proba, timings)


def check_same_weights(feature_meta: dict, other: dict, what: str, fix: str) -> None:
    """Refuse features / views / a backbone made with other weights than the features (sha256 differs)."""
    if other.get("sha256") != feature_meta.get("sha256"):
        raise StudyError(f"{what} uses other weights than the features ({other.get('sha256')} vs "
                         f"{feature_meta.get('sha256')}): {fix}")
