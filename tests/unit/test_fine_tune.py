"""The fine_tune stage's training (fkstudy.train.fine_tune) on a tiny real Keras backbone: the cut into a frozen
part and a trained part, the frozen part run once per photo set, the epoch cycle over the photos and their
fixed views, early stopping on val, the whole model agreeing with the cached path, and the start head."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from fkstudy import files
from fkstudy.errors import StudyError
from fkstudy.image import augment
from fkstudy.train import transfer
from fkstudy.train.params import TrainParams

keras = pytest.importorskip("keras")
from fkstudy.train import fine_tune as F  # noqa: E402
from fkstudy.image.keras_models import split_at  # noqa: E402
from fkstudy.train import keras_head  # noqa: E402

# batches of 5: 12 train photos end in a partial batch
RAW = {"head": {"units": 8, "dropout": 0.0}, "optimizer": "adam", "lr": 0.01, "batch_size": 5, "epochs": 30,
       "patience": 10, "fine_tune": {"unfreeze_layers": 1, "lr": 1e-2, "epochs": 3},
       "augment": {"views": 2, "flip": True, "rotation": 10.0, "zoom": 0.1, "brightness": 0.1}}


def cfg(**fine_tune):
    return TrainParams.model_validate({**RAW, "fine_tune": {**RAW["fine_tune"], **fine_tune}})


def tiny_backbone(seed=0, side=16, skip=False):
    """conv c1 -> batch norm -> conv c2 -> GAP (skip: c0's output added after c2, across c1)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((side, side, 3))
    x0 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x0)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    if skip:
        x = keras.layers.Add(name="add")([x0, x])
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="gap")(x), name="tiny")


class Counting:
    """A preprocess function that counts the photos it sees (= photos through the frozen part)."""

    def __init__(self):
        self.rows = 0

    def __call__(self, x):
        self.rows += len(x)
        return x / 127.5 - 1.0


def photos(n, seed=0, side=16):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def weights(model, name):
    return [w.copy() for w in model.get_layer(name).get_weights()]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_cut_composes_back_to_the_backbone():
    b = tiny_backbone()
    names = keras_head.unfreeze_last(b, 1)
    prefix, suffix, cut = F.split_frozen(b, names)
    assert names == ["c2"] and cut == "c2" and suffix.get_layer("c2") is b.get_layer("c2")
    assert not prefix.trainable_weights and prefix.output.shape[1:] == (16, 16, 4)
    x = photos(5).astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(suffix.predict(prefix.predict(x, verbose=0), verbose=0), b.predict(x, verbose=0),
                               atol=1e-6)


def test_a_connection_across_the_cut_is_refused():
    b = tiny_backbone(skip=True)
    with pytest.raises(StudyError, match="tiny: its activations cannot be cut at the input of 'c2'"):
        F.split_frozen(b, keras_head.unfreeze_last(b, 1))


def test_fine_tune_runs_the_frozen_part_once_per_set_and_cycles_the_sets():
    b, head = tiny_backbone(), keras_head.build_head(4, 2, units=8)
    imgs, val = photos(12), photos(4, seed=1)
    sets = [imgs, imgs[:, :, ::-1]]
    y, y_val = np.array([0, 1] * 6), np.array([0, 1, 1, 0])
    c1, bn, c2, dense = weights(b, "c1"), weights(b, "bn"), weights(b, "c2"), weights(head, "dense")
    prep = Counting()
    r = F.fine_tune(b, head, prep, sets, y, val, y_val, cfg(epochs=3), seed=0, set_names=["photos", "view0"])
    assert prep.rows == 4 + 12 + 12  # val once, each set once (epoch 3 reuses the photos' activations)
    assert r.history["train_set"].tolist() == ["photos", "view0", "photos"]
    assert r.history["epoch"].tolist() == [1, 2, 3] and r.info["epochs_run"] == 3 and r.info["n_train_sets"] == 2
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(r.history.columns)
    assert r.info["unfrozen_layers"] == ["c2"] and r.info["cut_layer"] == "c2"
    assert same(c1, weights(b, "c1")) and same(bn, weights(b, "bn")) and not b.get_layer("bn").trainable
    assert not same(c2, weights(b, "c2")) and not same(dense, weights(head, "dense"))  # block and head trained
    # the saved model (photos -> backbone -> head) is the cached path: same val probabilities
    np.testing.assert_allclose(F.predict_images(r.model, prep, val), r.val_proba, atol=1e-5)
    assert np.allclose(r.val_proba.sum(1), 1.0, atol=1e-12)
    # the kept weights are the best val-loss epoch's
    best = int(r.history["val_loss"].idxmin()) + 1
    assert r.info["best_epoch"] == best
    assert log_loss(y_val, r.val_proba, labels=[0, 1]) == pytest.approx(r.history["val_loss"].iloc[best - 1], abs=1e-4)
    # a set no epoch reaches is never run; the same seed gives the same curve
    b2, head2 = tiny_backbone(), keras_head.build_head(4, 2, units=8)
    prep2 = Counting()
    r1 = F.fine_tune(b2, head2, prep2, sets, y, val, y_val, cfg(epochs=1), seed=0)
    assert prep2.rows == 4 + 12 and r1.history["train_set"].tolist() == ["set0"]
    b3 = tiny_backbone()
    head3 = keras_head.build_head(4, 2, units=8)
    again = F.fine_tune(b3, head3, Counting(), sets, y, val, y_val, cfg(epochs=3), seed=0,
                        set_names=["photos", "view0"])
    pd.testing.assert_frame_equal(again.history, r.history, check_exact=True)


def test_fine_tune_stops_early_and_keeps_the_best_epoch():
    b, head = tiny_backbone(), keras_head.build_head(4, 2, units=8)
    imgs, val = photos(12), photos(4, seed=1)
    y, y_val = np.array([0, 1] * 6), np.array([0, 1, 1, 0])
    c = cfg(epochs=12, lr=1.0).model_copy(update={"patience": 2, "optimizer": "sgd"})  # lr 1: it diverges
    r = F.fine_tune(b, head, Counting(), [imgs], y, val, y_val, c, seed=0)
    assert r.info["epochs_run"] == r.info["best_epoch"] + 2 < 12
    assert log_loss(y_val, r.val_proba, labels=[0, 1]) == pytest.approx(r.history["val_loss"].min(), abs=1e-4)


def test_train_sets_must_match_the_labels():
    b, head = tiny_backbone(), keras_head.build_head(4, 2, units=8)
    with pytest.raises(ValueError, match=r"train_sets must be photo \(or activation\) arrays of 12 rows"):
        F.fine_tune(b, head, Counting(), [photos(11)], np.zeros(12, int), photos(2), [0, 1], cfg(), seed=0)


# ------------------------------------------------------------------------------- the finetuned variant
CLASSES = ["a", "b", "c"]


def world(n_per=6):
    rows = [{"id": f"{c}{k}", "category": c, "split": "train" if k < 3 else ("val" if k < 5 else "test")}
            for c in CLASSES for k in range(n_per)]
    cat = pd.DataFrame(rows)
    ids = cat["id"].to_numpy()
    X = np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32)
    image_ids = ids[::-1].copy()  # the image cache in another order than the catalog
    return cat, X, ids, photos(len(ids), seed=2), image_ids


def test_view_sets_are_the_augment_stages_views():
    cat, X, ids, images, image_ids = world()
    d = transfer.prepare(X, ids, cat, "finetuned")
    aug = cfg().augment
    views, view_ids = augment.train_views(images, image_ids, set(d.splits.ids_train), aug, seed=4)  # the stage's
    sets, names = F.view_sets(images, image_ids, d.splits.ids_train, cat, aug, seed=4, n_sets=9)
    assert names == ["photos", "view0", "view1"] and all(len(s) == len(d.splits.ids_train) for s in sets)
    for i, pid in enumerate(d.splits.ids_train):
        np.testing.assert_array_equal(sets[0][i], images[list(image_ids).index(pid)])
        for k in (0, 1):
            np.testing.assert_array_equal(sets[k + 1][i], views[view_ids.index(f"{pid}#{k}")])
    two, names2 = F.view_sets(images, image_ids, d.splits.ids_train, cat, aug, seed=4, n_sets=2)
    assert names2 == ["photos", "view0"]
    np.testing.assert_array_equal(two[1], sets[1])  # view 0 does not depend on how many views are drawn
    assert F.view_sets(images, image_ids, d.splits.ids_train, cat, aug, seed=4, n_sets=1)[1] == ["photos"]


def test_fine_tune_classifier_scores_val_and_test_with_the_tuned_model():
    cat, X, ids, images, image_ids = world()
    d = transfer.prepare(X, ids, cat, "finetuned")
    head = keras_head.build_head(4, 3, units=8)
    prep = Counting()
    c = cfg(epochs=2)
    r = F.fine_tune_classifier("tiny", d, c, 0, head=head, load_backbone=tiny_backbone, preprocess=prep,
                               images=images, image_ids=image_ids, catalog=cat)
    n_train, n_val, n_test = len(d.splits.y_train), len(d.splits.y_val), len(d.splits.y_test)
    assert prep.rows == n_val + 2 * n_train + n_test  # val and two sets through the frozen part, test once
    assert r.head is head and r.unfreeze == 1 and r.info["unfrozen_layers"] == 1
    assert r.info["protocol"] == F.PROTOCOL and r.info["start_head"] == "train@tiny-augmented"
    assert r.info["n_train_views"] == 2 * n_train and r.history["train_set"].tolist() == ["photos", "view0"]
    test_photos = images[[list(image_ids).index(i) for i in d.splits.ids_test]]
    expected = r.full.predict(test_photos.astype(np.float32) / 127.5 - 1.0, verbose=0)
    np.testing.assert_allclose(r.proba, expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert r.test["n"] == n_test and r.val["n"] == n_val and r.timings["fit_seconds"] > 0
    with pytest.raises(ValueError, match="tiny: the finetuned variant trains a Keras backbone"):
        F.fine_tune_classifier("tiny", d, c, 0, head=head, load_backbone=None, preprocess=prep, images=images,
                               image_ids=image_ids, catalog=cat)


def stored(images, image_ids, cat, aug, seed, n_views=2, cut="c2"):
    """What deep_features and augment store for a tiny backbone cut at `cut`: (Cached, the two feature files'
    arrays) — the prefix run over every photo and over the augment stage's views."""
    prefix = split_at(tiny_backbone(), cut)[0]
    prep = lambda x: x / 127.5 - 1.0  # noqa: E731
    views, view_ids = augment.train_views(images, image_ids, set(cat.loc[cat["split"] == "train", "id"]),
                                          aug.model_copy(update={"views": n_views}), seed)
    return F.Cached(cut, F.activations(prefix, prep, images), np.asarray(image_ids),
                    F.activations(prefix, prep, views), np.asarray(view_ids))


def seeded_head():
    keras.utils.set_random_seed(7)
    return keras_head.build_head(4, 3, units=8)


def test_stored_activations_give_the_same_model_without_running_the_frozen_part():
    cat, X, ids, images, image_ids = world()
    d = transfer.prepare(X, ids, cat, "finetuned")
    c = cfg(epochs=3)
    cached = stored(images, image_ids, cat, c.augment, seed=0)
    runs = {}
    for name, kw in (("photos", {}), ("stored", {"cached": cached})):
        prep = Counting()
        r = F.fine_tune_classifier("tiny", d, c, 0, head=seeded_head(),
                                   load_backbone=tiny_backbone, preprocess=prep, images=images,
                                   image_ids=image_ids, catalog=cat, **kw)
        runs[name] = (r, prep.rows)
    (a, rows_a), (b, rows_b) = runs["photos"], runs["stored"]
    assert rows_a > 0 and rows_b == 0  # nothing through the frozen part: train, views, val and test were stored
    assert b.timings["frozen_part_stored"] and not a.timings["frozen_part_stored"]
    assert b.history["train_set"].tolist() == a.history["train_set"].tolist() == ["photos", "view0", "view1"]
    pd.testing.assert_frame_equal(b.history, a.history, rtol=1e-5)
    np.testing.assert_allclose(b.proba, a.proba, atol=1e-6)
    assert b.val["log_loss"] == pytest.approx(a.val["log_loss"], abs=1e-6)
    # stored at another cut, or without the views an epoch needs: the frozen part runs here, same result
    for other in (stored(images, image_ids, cat, c.augment, seed=0, cut="c1"),
                  F.Cached("c2", cached.photos, cached.photo_ids)):
        prep = Counting()
        r = F.fine_tune_classifier("tiny", d, c, 0, head=seeded_head(),
                                   load_backbone=tiny_backbone, preprocess=prep, images=images,
                                   image_ids=image_ids, catalog=cat, cached=other)
        assert prep.rows == rows_a and not r.timings["frozen_part_stored"]
        np.testing.assert_allclose(r.proba, a.proba, atol=1e-6)


def test_load_cached_reads_the_stored_activations_and_checks_the_views(tmp_path):
    cat, _, _, images, image_ids = world()
    aug = cfg().augment
    c = stored(images, image_ids, cat, aug, seed=3)
    feats, views = tmp_path / "image_tiny.npz", tmp_path / "augmented_tiny.npz"
    meta = {"sha256": "abc", "activations_at": "c2"}
    files.save_features(feats, np.ones((len(image_ids), 4), np.float32), image_ids, meta, activations=c.photos)
    vX = np.ones((len(c.view_ids), 4), np.float32)
    files.save_features(views, vX, c.view_ids, {**meta, "augment": aug.model_dump(), "seed": 3},
                        activations=c.views)
    got = F.load_cached(feats, views, aug, seed=3)
    assert got.cut == "c2" and got.photo_ids.tolist() == list(image_ids)
    np.testing.assert_array_equal(got.photos, c.photos)
    np.testing.assert_array_equal(got.views, c.views)
    assert got.view_ids.tolist() == list(c.view_ids)
    assert F.load_cached(feats, views, aug, seed=4).views is None  # other views: drawn again from the photos
    assert F.load_cached(feats, tmp_path / "missing.npz", aug, seed=3).views is None
    files.save_features(feats, np.ones((len(image_ids), 4), np.float32), image_ids, meta)
    assert F.load_cached(feats, views, aug, seed=3) is None  # no activations stored: the frozen part runs
    with pytest.raises(files.FeatureFileError, match="side array 'activations' must be float32 with 18 rows"):
        files.save_features(feats, np.ones((18, 4), np.float32), image_ids, meta, activations=c.photos[:3])


def test_the_start_head_is_the_saved_one_with_the_same_classes(tmp_path):
    head = keras_head.build_head(4, 3, units=8)
    files.save_keras(head, tmp_path / "head.keras")
    with pytest.raises(StudyError, match=r"classes.json\) is missing: .* run `dvc repro train@x-augmented` first"):
        F.load_start_head(str(tmp_path), CLASSES, "dvc repro train@x-augmented")
    (tmp_path / "classes.json").write_text(json.dumps(CLASSES))
    loaded = F.load_start_head(str(tmp_path), CLASSES, "fix")
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), head.predict(x, verbose=0))
    with pytest.raises(StudyError, match="lists other classes than the catalog"):
        F.load_start_head(str(tmp_path), ["a", "c", "b"], "fix")
