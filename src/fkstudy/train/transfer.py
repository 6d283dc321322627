"""Transfer learning (the `train` stage): which feature rows the head sees, leak-checked, and the whole
recipe — head on cached backbone features, optional end-to-end fine-tuning, evaluation on val and test.

base:      train rows of the backbone's feature file (one per train photo).
augmented: those rows plus the precomputed augmented views of the train photos
           (view ids "<product id>#<k>"); val and test rows are never augmented.
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
from ..files import row_index
from . import keras_head

VARIANTS = ("base", "augmented", "finetuned")
WITH_VIEWS = ("augmented", "finetuned")   # the head is first fitted on the train photos + their augmented views


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


def train_classifier(backbone: str, variant: str, d: TrainData, cfg, seed: int, *, load_backbone=None,
                     preprocess=None, images=None, image_ids=None, log=None) -> TrainResult:
    """The transfer-learning classifier of one backbone / variant on prepared rows `d`.

    1. The Keras head is fitted on the cached backbone features (train [+ views]), early-stopped on val.
    2. Keras backbones (`load_backbone()` -> the frozen backbone model, `preprocess` its input function):
       assembled with the head into one model; for the finetuned variant (the seed study's "augmented":
       augmentation plus its last `cfg.fine_tune.unfreeze_layers` layers trainable, VGG16's block5 = 3),
       fine-tuned end to end on the photos (`images` uint8 with their `image_ids`), augmented on the fly.
       torch backbones keep the head alone (and have no finetuned variant).
    3. Val and test are scored once (the fine-tuned model on the photos, else the head on the features).
    """
    s, classes = d.splits, d.classes
    unfreeze = cfg.fine_tune.unfreeze_layers if variant == "finetuned" else 0
    if unfreeze and load_backbone is None:
        raise ValueError(f"{backbone}: the finetuned variant trains a Keras backbone end to end; {backbone} is not "
                         "one (remove it from pipeline.fine_tune)")
    t0 = time.perf_counter()
    head, hist, info = keras_head.fit_head(d.X_fit, to_index(d.y_fit, classes), s.X_val, to_index(s.y_val, classes),
                                           len(classes), cfg, seed)
    timings = {"head_fit_seconds": time.perf_counter() - t0}
    full = None
    if load_backbone is not None:
        base = load_backbone()
        if unfreeze:  # phase 2: end to end, last layers trainable, photos augmented on the fly
            def pixels(ids_):
                return images[row_index(image_ids, ids_, "image cache")]

            full, hist2, info2 = keras_head.fine_tune(base, head, preprocess, pixels(s.ids_train),
                                                      to_index(s.y_train, classes), pixels(s.ids_val),
                                                      to_index(s.y_val, classes), cfg, seed)
            hist = pd.concat([hist.assign(phase="head"),
                              hist2.assign(phase="fine_tune", epoch=hist2["epoch"] + len(hist))], ignore_index=True)
            info = {"best_epoch": info["epochs_run"] + info2["best_epoch"],
                    "epochs_run": info["epochs_run"] + info2["epochs_run"],
                    "head_best_epoch": info["best_epoch"], "unfrozen_layers": len(info2["unfrozen_layers"])}
        else:
            full = keras_head.assemble(base, head, name=f"{backbone}_{variant}")
    timings["fit_seconds"] = time.perf_counter() - t0

    if unfreeze:  # the backbone changed: evaluate the whole model on the photos
        def full_proba(ids_):
            x = preprocess(images[row_index(image_ids, ids_, "image cache")].astype(np.float32))
            return keras_head.predict_proba(full, x, batch_size=16)
        proba, val_proba = full_proba(s.ids_test), full_proba(s.ids_val)
    else:
        proba, val_proba = keras_head.predict_proba(head, s.X_test), keras_head.predict_proba(head, s.X_val)
    return TrainResult(d, head, full, hist, info, unfreeze, scores(s.y_test, proba, classes, classes),
                       scores(s.y_val, val_proba, classes, classes), proba, timings)


def check_same_weights(feature_meta: dict, other: dict, what: str, fix: str) -> None:
    """Refuse features / views / a backbone made with other weights than the features (sha256 differs)."""
    if other.get("sha256") != feature_meta.get("sha256"):
        raise StudyError(f"{what} uses other weights than the features ({other.get('sha256')} vs "
                         f"{feature_meta.get('sha256')}): {fix}")
