"""The finetuned variant (stage fine_tune@<backbone>): the last layers of a Keras backbone and the head trained
on cached activations of the backbone's frozen part.

With the last `unfreeze_layers` weight layers trainable (VGG16: block5), everything below them is a fixed
function of the photo: `split_frozen` cuts the backbone at the input of the first trainable layer into a
frozen `prefix` (VGG16 at 224 px: blocks 1-4 -> 14 x 14 x 512) and a trainable `suffix` (block5 + GAP, the
same layer objects as the backbone's). The prefix runs ONCE per photo and training set — or not at all: the
deep_features and augment stages store its outputs beside their features (`deep_features.<b>.activations_at`,
`load_cached`), the same numbers bit for bit; the suffix and the head train on the cached activations, epoch
after epoch.

Protocol (a study decision, `PROTOCOL` in the metrics): the start is the augmented variant's trained head
(train@<backbone>-augmented); the training sets are the train photos (set 0) and a fixed number of augmented
views of them (set k = view k - 1, the very views the `augment` stage drew: fkstudy.image.augment, same params
and seed), epoch e training on set (e - 1) mod n_sets — instead of freshly augmented photos every epoch.
Early stopping on val loss (`train.patience`), the best epoch's weights kept, as Keras'
EarlyStopping(restore_best_weights=True). TensorFlow is imported inside the functions.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.splits import assert_no_test, split_ids
from ..errors import StudyError
from ..evaluate.metrics import scores
from ..files import row_index
from .keras_head import _keras, make_optimizer, set_determinism, unfreeze_last
from .transfer import TrainData, TrainResult, to_index

log = logging.getLogger("fkstudy")

BATCH = 16   # photos per prefix forward pass (VGG16 block 1 at 224 px: 12.8 MB of activations per photo)
PROTOCOL = "block5 on cached block-4 activations of fixed views"
START_HEAD = "augmented"   # the train variant whose trained head the fine-tuning starts from


@dataclass
class FineTuned:
    model: object              # image (preprocessed float) -> backbone (fine-tuned layers in place) -> head
    history: pd.DataFrame      # epoch, loss, accuracy, val_loss, val_accuracy, train_set (one row per epoch)
    info: dict                 # best_epoch, epochs_run, unfrozen_layers, cut_layer, n_train_sets, start_val_*
    val_proba: np.ndarray      # val probabilities of the kept weights (float64 rows summing to 1)
    timings: dict              # frozen_part_seconds (the prefix on val and the train sets), tune_seconds
    on_activations: object = None   # the kept weights' suffix + head, on frozen-part activations


def split_frozen(backbone, trainable: Sequence[str]):
    """(prefix, suffix, cut layer name): the backbone cut at the input of its first trainable layer
    (fkstudy.image.keras_models.split_at).

    The suffix must hold every trainable layer and the prefix none (a skip connection across the cut, as in
    EfficientNet's blocks, makes the cut impossible: StudyError)."""
    from ..image.keras_models import split_at

    first = next((layer for layer in backbone.layers if layer.name in set(trainable)), None)
    if first is None:
        raise ValueError(f"{backbone.name}: none of the layers {list(trainable)} is in the backbone")
    prefix, suffix = split_at(backbone, first.name)
    outside = set(trainable) - {layer.name for layer in suffix.layers}
    if outside or prefix.trainable_weights:
        raise StudyError(f"{backbone.name}: the frozen part before {first.name!r} holds trainable layers "
                         f"({sorted(outside) or [w.path for w in prefix.trainable_weights]})")
    return prefix, suffix, first.name


def activations(prefix, preprocess, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """float32 outputs of the frozen prefix on uint8 photos, written batch by batch into one array; float32
    input is taken as activations already computed (the deep_features / augment stages' `activations`), checked
    against the prefix's output shape and returned as is."""
    if images.dtype == np.float32:
        if tuple(images.shape[1:]) != tuple(prefix.output.shape[1:]):
            raise ValueError(f"cached activations of shape {images.shape[1:]} for a frozen part giving "
                             f"{tuple(prefix.output.shape[1:])}")
        return images
    out = None
    for i in range(0, len(images), batch_size):
        a = np.asarray(prefix.predict_on_batch(preprocess(images[i:i + batch_size].astype(np.float32))), np.float32)
        if out is None:
            out = np.empty((len(images), *a.shape[1:]), np.float32)
        out[i:i + len(a)] = a
    return out


def predict_images(model, preprocess, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Probabilities (float64 rows summing to 1) of an image model on uint8 photos, preprocessed batch by batch
    (preprocess None: `images` are the model's float32 input as is, e.g. frozen-part activations)."""
    prep = (lambda x: x) if preprocess is None else (lambda x: preprocess(x.astype(np.float32)))
    p = np.concatenate([np.asarray(model.predict_on_batch(prep(images[i:i + batch_size])), np.float64)
                        for i in range(0, len(images), batch_size)])
    return p / p.sum(axis=1, keepdims=True)


def _batches(X: np.ndarray, y: np.ndarray, order: np.ndarray, batch_size: int):
    """One epoch of (X[rows], y[rows]) batches in `order`, sliced from the cache (no copy of the whole set)."""
    keras = _keras()

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()  # workers=1: batches are read in this thread, in order

        def __len__(self):
            return math.ceil(len(order) / batch_size)

        def __getitem__(self, i):
            rows = order[i * batch_size:(i + 1) * batch_size]
            return X[rows], y[rows]

    return Batches()


def fine_tune(backbone, head, preprocess, train_sets: Sequence[np.ndarray], y_train, images_val, y_val, cfg,
              seed: int, set_names: Sequence[str] | None = None) -> FineTuned:
    """Backbone + (already trained) head, the last `cfg.fine_tune.unfreeze_layers` backbone layers trainable.

    train_sets: uint8 photo arrays aligned with y_train (set 0 the photos, set k their k-th fixed view); epoch e
    trains on set (e - 1) mod len(train_sets), whose frozen-part activations are computed the first time it is
    needed (a set no epoch reaches is never run). Val: the frozen part once; every epoch's val loss and the kept
    weights' probabilities come from that cache. A set (or images_val) given as float32 activations of the frozen
    part is used as is (`activations`)."""
    keras = _keras()
    ft = cfg.fine_tune
    if not len(train_sets) or any(len(s) != len(y_train) for s in train_sets):
        raise ValueError(f"train_sets must be photo (or activation) arrays of {len(y_train)} rows each")
    set_names = list(set_names or [f"set{k}" for k in range(len(train_sets))])
    set_determinism(seed)
    names = unfreeze_last(backbone, ft.unfreeze_layers)
    prefix, suffix, cut = split_frozen(backbone, names)
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    t0 = time.perf_counter()
    val = activations(prefix, preprocess, images_val)
    frozen = time.perf_counter() - t0
    inp = keras.Input(val.shape[1:], name="activations")
    tuned = keras.Model(inp, head(suffix(inp, training=False)), name="tuned")
    tuned.compile(optimizer=make_optimizer(cfg.optimizer, ft.lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    val_rows = np.arange(len(val))
    start_loss, start_acc = tuned.evaluate(_batches(val, y_val, val_rows, cfg.batch_size), verbose=0)

    cache: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    rows, best, stale = [], None, 0
    for epoch in range(1, ft.epochs + 1):
        k = (epoch - 1) % len(train_sets)
        if k not in cache:
            t1 = time.perf_counter()
            cache[k] = activations(prefix, preprocess, train_sets[k])
            frozen += time.perf_counter() - t1
        h = tuned.fit(_batches(cache[k], y_train, rng.permutation(len(y_train)), cfg.batch_size),
                      validation_data=_batches(val, y_val, val_rows, cfg.batch_size), epochs=1, verbose=0)
        rows.append({"epoch": epoch, **{m: float(v[-1]) for m, v in h.history.items()}, "train_set": set_names[k]})
        if best is None or rows[-1]["val_loss"] < best[0]:  # EarlyStopping(min_delta=0): strictly lower
            best, stale = (rows[-1]["val_loss"], epoch, tuned.get_weights()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    cache.clear()
    tuned.set_weights(best[2])
    p = np.asarray(tuned.predict(_batches(val, y_val, val_rows, cfg.batch_size), verbose=0), np.float64)
    image = keras.Input(backbone.input_shape[1:], name="image")
    full = keras.Model(image, head(backbone(image, training=False)), name="fine_tuned")
    info = {"best_epoch": int(best[1]), "epochs_run": len(rows), "unfrozen_layers": names, "cut_layer": cut,
            "n_train_sets": len({r["train_set"] for r in rows}), "start_val_loss": float(start_loss),
            "start_val_accuracy": float(start_acc)}
    timings = {"frozen_part_seconds": frozen, "tune_seconds": time.perf_counter() - t0 - frozen}
    return FineTuned(full, pd.DataFrame(rows), info, p / p.sum(axis=1, keepdims=True), timings, tuned)


# --------------------------------------------------------------------------- the finetuned variant of a backbone
def load_start_head(model_dir: str, classes, fix: str):
    """The trained Keras head of `model_dir` (head.keras), checked to score `classes` in the same order."""
    path, names = Path(model_dir) / "head.keras", Path(model_dir) / "classes.json"
    if not path.is_file() or not names.is_file():
        raise StudyError(f"{path} (or its classes.json) is missing: the finetuned variant starts from that head; "
                         f"run `{fix}` first")
    if (listed := json.loads(names.read_text())) != list(classes):
        raise StudyError(f"{names} lists other classes than the catalog ({listed} vs {list(classes)}): run `{fix}`")
    return _keras().models.load_model(path, compile=False)


@dataclass
class Cached:
    """Frozen-part activations stored by the deep_features stage (`photos`, by photo id) and the augment stage
    (`views`, by view id "<id>#<k>"): the backbone's outputs at the input of layer `cut`
    (deep_features.<backbone>.activations_at)."""
    cut: str
    photos: np.ndarray
    photo_ids: np.ndarray
    views: np.ndarray | None = None
    view_ids: np.ndarray | None = None


def load_cached(features_path, augmented_path, aug, seed: int) -> Cached | None:
    """The activations stored beside the backbone's features, or None when they hold none. The views' activations
    only when they were drawn with the same `train.augment` params and seed from the same weights (else the
    views are made again from the photos)."""
    from .. import files

    if "activations" not in files.npz_names(features_path):
        log.info("%s holds no frozen-part activations: the frozen part runs here", features_path)
        return None
    acts, ids, meta = files.load_npz(features_path, ("activations", "ids", "meta"), "feature file",
                                     "its deep_features stage")
    cached = Cached(meta["activations_at"], acts, ids)
    if Path(augmented_path).is_file() and "activations" in files.npz_names(augmented_path):
        views, view_ids, vmeta = files.load_npz(augmented_path, ("activations", "ids", "meta"), "feature file",
                                                "its augment stage")
        same = {k: vmeta.get(k) for k in ("activations_at", "sha256", "augment", "seed")}
        if same == {"activations_at": cached.cut, "sha256": meta.get("sha256"), "augment": aug.model_dump(),
                    "seed": seed}:
            cached.views, cached.view_ids = views, view_ids
        else:
            log.info("%s: views made with other settings (%s): they are drawn again here", augmented_path, same)
    return cached


def view_sets(images, image_ids, ids_train, catalog: pd.DataFrame, aug, seed: int, n_sets: int):
    """The training sets, uint8 photos aligned with `ids_train`: set 0 the photos, set k their view k - 1 — the
    very views the `augment` stage drew (fkstudy.image.augment.train_views on the same image cache, train ids,
    `train.augment` params and seed; view k of a photo does not depend on how many are drawn), at most
    `aug.views`. Returns (sets, names)."""
    from ..image import augment

    n_views = min(n_sets - 1, aug.views)
    photos = images[row_index(image_ids, ids_train, "image cache")]
    if n_views <= 0:
        return [photos], ["photos"]
    views, view_ids = augment.train_views(images, image_ids, split_ids(catalog, "train"),
                                          aug.model_copy(update={"views": n_views}), seed)
    return with_views(photos, views, view_ids, ids_train, n_views, "augmented views")


def with_views(photos, views, view_ids, ids_train, n_views: int, where: str):
    """(sets, names): `photos` (aligned with ids_train) then, for k < n_views, the rows of `views` whose id is
    "<train id>#<k>" — the augment stage's view ids."""
    sets, names = [photos], ["photos"]
    for k in range(n_views):
        wanted = [f"{i}#{k}" for i in np.asarray(ids_train).tolist()]
        sets.append(views[row_index(np.asarray(view_ids), wanted, where)])
        names.append(f"view{k}")
    return sets, names


def fine_tune_classifier(backbone: str, d: TrainData, cfg, seed: int, *, head, load_backbone, preprocess, images,
                         image_ids, catalog: pd.DataFrame, cached: Cached | None = None) -> TrainResult:
    """The finetuned variant (the seed study's "augmented": augmentation plus VGG16's block5 trained): the
    augmented variant's trained `head`, then the last `cfg.fine_tune.unfreeze_layers` layers of the Keras
    backbone (`load_backbone()`, its input function `preprocess`) and the head trained on cached activations
    (`fine_tune`, on `view_sets`); val picks the epoch, test is scored once by the whole model on the photos
    (`images` uint8 with their `image_ids`). `cached` (load_cached) activations at the same cut replace the
    frozen part's run on the photos and views: the same numbers, bit for bit (the suffix of `split_frozen`
    composes back to the backbone)."""
    if load_backbone is None:
        raise ValueError(f"{backbone}: the finetuned variant trains a Keras backbone end to end; {backbone} is not "
                         "one (remove it from pipeline.fine_tune)")
    s, classes = d.splits, d.classes
    assert_no_test(s.ids_train, catalog, ("train",))  # the photos and their views: train ids only
    t0 = time.perf_counter()
    model = load_backbone()
    n_sets = min(cfg.fine_tune.epochs, 1 + cfg.augment.views)
    cut = unfreeze_last(model, cfg.fine_tune.unfreeze_layers)[0]  # fine_tune cuts at the first trainable layer
    if cached is not None and (cached.cut != cut or (n_sets > 1 and cached.views is None)):
        log.info("stored activations at %r (views: %s) do not serve a cut at %r: the frozen part runs here",
                 cached.cut, cached.views is not None, cut)
        cached = None
    t1 = time.perf_counter()
    if cached is None:
        sets, names = view_sets(images, image_ids, s.ids_train, catalog, cfg.augment, seed, n_sets)
        inputs = lambda ids_: images[row_index(image_ids, ids_, "image cache")]  # noqa: E731
    else:
        inputs = lambda ids_: cached.photos[row_index(cached.photo_ids, ids_, "stored activations")]  # noqa: E731
        sets, names = with_views(inputs(s.ids_train), cached.views, cached.view_ids, s.ids_train, n_sets - 1,
                                 "stored view activations")
    timings = {"views_seconds": time.perf_counter() - t1, "frozen_part_stored": cached is not None}
    r = fine_tune(model, head, preprocess, sets, to_index(s.y_train, classes), inputs(s.ids_val),
                  to_index(s.y_val, classes), cfg, seed, names)
    timings.update(r.timings, fit_seconds=time.perf_counter() - t0)
    proba = (predict_images(r.model, preprocess, inputs(s.ids_test)) if cached is None
             else predict_images(r.on_activations, None, inputs(s.ids_test)))
    info = {**r.info, "unfrozen_layers": len(r.info["unfrozen_layers"]), "protocol": PROTOCOL,
            "start_head": f"train@{backbone}-{START_HEAD}",
            "n_train_views": int(len(s.y_train) * r.info["n_train_sets"])}
    return TrainResult(d, head, r.model, r.history, info, cfg.fine_tune.unfreeze_layers,
                       scores(s.y_test, proba, classes, classes), scores(s.y_val, r.val_proba, classes, classes),
                       proba, timings)
