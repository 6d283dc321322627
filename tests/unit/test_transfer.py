"""Transfer-learning pieces of the `train` stage: augmentation, fit rows (leak guard), Keras head,
CLIP zero-shot scoring. The fine_tune stage's cached-activation training: tests/unit/test_fine_tune.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fkstudy.data.splits import LeakError
from fkstudy.errors import StudyError
from fkstudy.evaluate import zero_shot as Z
from fkstudy.image import augment
from fkstudy.train import transfer
from fkstudy.train.params import TrainParams

CLASSES = ["a", "b", "c"]


def catalog(n_per=6):
    rows = []
    for c in CLASSES:
        for k in range(n_per):
            split = "train" if k < n_per // 2 else ("val" if k < n_per - 1 else "test")
            rows.append({"id": f"{c}{k}", "category": c, "split": split})
    return pd.DataFrame(rows)


def separable(cat, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = {c: rng.normal(0, 3, d) for c in CLASSES}
    X = np.stack([centers[c] + rng.normal(0, 0.3, d) for c in cat["category"]]).astype(np.float32)
    return X, cat["id"].to_numpy()


# ------------------------------------------------------------------------------------ augmentation
def img(seed=0, size=32):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_identity_view_is_the_image():
    x = img()
    assert np.array_equal(augment.apply(x, angle=0.0, scale=1.0, flip=False, brightness=1.0), x)


def test_flip_and_brightness_are_exact():
    x = img()
    assert np.array_equal(augment.apply(x, 0.0, 1.0, True, 1.0), x[:, ::-1])
    half = augment.apply(x, 0.0, 1.0, False, 0.5)
    assert np.abs(half.astype(int) - np.round(x * 0.5).astype(int)).max() <= 1


def test_rotation_fills_corners_white_and_keeps_shape():
    x = np.zeros((40, 40, 3), np.uint8)
    out = augment.apply(x, angle=45.0, scale=1.0, flip=False, brightness=1.0)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert (out[0, 0] == 255).all() and (out[20, 20] == 0).all()


def test_views_are_seeded_and_per_image_independent():
    imgs = np.stack([img(i) for i in range(4)])
    cfg = augment.AugmentConfig()
    a, src = augment.views(imgs, 3, cfg, seed=7)
    b, _ = augment.views(imgs, 3, cfg, seed=7)
    c, _ = augment.views(imgs, 3, cfg, seed=8)
    assert a.shape == (12, 32, 32, 3) and list(src) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    first, _ = augment.views(imgs[:2], 3, cfg, seed=7)  # fewer images: the same views for those drawn
    assert np.array_equal(first, a[:6])


@pytest.mark.parametrize("bad", [{"rotation": -1.0}, {"zoom": 1.0}, {"brightness": 1.5}])
def test_augment_config_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        augment.AugmentConfig(**bad)


def test_views_reject_float_images():
    with pytest.raises(ValueError, match="uint8"):
        augment.views(np.zeros((2, 8, 8, 3), np.float32), 1, augment.AugmentConfig(), 0)


def test_train_views_augment_train_photos_only():
    imgs = np.stack([img(i) for i in range(5)])
    ids = ["a0", "b0", "a1", "c0", "b1"]
    aug = CFG.augment.model_copy(update={"views": 2})
    views, view_ids = augment.train_views(imgs, ids, {"b0", "c0", "zz"}, aug, seed=3)
    assert views.shape == (4, 32, 32, 3) and views.dtype == np.uint8
    assert view_ids == ["b0#0", "b0#1", "c0#0", "c0#1"]
    assert [transfer.source_id(v) for v in view_ids] == ["b0", "b0", "c0", "c0"]
    cfg = augment.AugmentConfig(flip=aug.flip, rotation=aug.rotation, zoom=aug.zoom, brightness=aug.brightness)
    same, _ = augment.views(imgs[[1, 3]], 2, cfg, seed=3)  # the same draws as augment.views on those photos
    np.testing.assert_array_equal(views, same)
    again, _ = augment.train_views(imgs, ids, {"b0", "c0"}, aug, seed=3)
    np.testing.assert_array_equal(views, again)
    with pytest.raises(StudyError, match="no train photos"):
        augment.train_views(imgs, ids, {"nope"}, aug, seed=3)


# ------------------------------------------------------------------------------------ fit rows
def test_base_variant_fits_on_train_rows_only():
    cat = catalog()
    X, ids = separable(cat)
    d = transfer.prepare(X, ids, cat, "base")
    assert set(d.fit_source_ids) == set(cat.loc[cat["split"] == "train", "id"])
    assert len(d.splits.y_test) == 3 and d.classes == CLASSES


def test_augmented_variant_adds_views_of_train_photos():
    cat = catalog()
    X, ids = separable(cat)
    train_ids = cat.loc[cat["split"] == "train", "id"].tolist()
    view_ids = [f"{i}#{k}" for i in train_ids for k in range(2)]
    aug = np.ones((len(view_ids), X.shape[1]), np.float32)
    d = transfer.prepare(X, ids, cat, "augmented", aug, view_ids)
    assert len(d.y_fit) == 3 * len(train_ids)
    label = dict(zip(cat["id"], cat["category"]))
    assert list(d.y_fit[len(train_ids):]) == [label[i] for i in train_ids for _ in range(2)]


def test_views_of_test_photos_are_a_leak():
    cat = catalog()
    X, ids = separable(cat)
    test_id = cat.loc[cat["split"] == "test", "id"].iloc[0]
    with pytest.raises(LeakError, match="test"):
        transfer.prepare(X, ids, cat, "augmented", np.ones((1, X.shape[1]), np.float32), [f"{test_id}#0"])


def test_view_ids_must_name_their_source():
    with pytest.raises(ValueError, match="#"):
        transfer.source_id("abc")
    assert transfer.source_id("a#b#3") == "a#b"


def test_augmented_without_views_is_an_error():
    cat = catalog()
    X, ids = separable(cat)
    with pytest.raises(ValueError, match="augment"):
        transfer.prepare(X, ids, cat, "augmented")


def test_check_same_weights_refuses_other_weights():
    transfer.check_same_weights({"sha256": "abc"}, {"sha256": "abc"}, "the augmented views", "re-run augment")
    with pytest.raises(StudyError, match=r"the augmented views uses other weights than the features \(def vs abc\): "
                                         "re-run augment"):
        transfer.check_same_weights({"sha256": "abc"}, {"sha256": "def"}, "the augmented views", "re-run augment")


# ------------------------------------------------------------------------------------ Keras head
RAW = {"head": {"units": 16, "dropout": 0.5}, "optimizer": "adam", "lr": 0.01, "batch_size": 8, "epochs": 30,
       "patience": 5, "fine_tune": {"unfreeze_layers": 2, "lr": 1e-4, "epochs": 1},
       "augment": {"views": 1, "flip": True, "rotation": 10.0, "zoom": 0.1, "brightness": 0.1}}
CFG = TrainParams.model_validate(RAW)


def test_keras_head_learns_and_is_deterministic(tmp_path):
    from fkstudy.train import keras_head
    from fkstudy.train.head_npz import HEAD_ARRAYS, head_arrays, save_head_npz

    cat = catalog(n_per=10)
    X, ids = separable(cat)
    d = transfer.prepare(X, ids, cat, "base")
    y_fit, y_val = transfer.to_index(d.y_fit, d.classes), transfer.to_index(d.splits.y_val, d.classes)
    m1, h1, info = keras_head.fit_head(d.X_fit, y_fit, d.splits.X_val, y_val, 3, CFG, seed=3)
    m2, h2, _ = keras_head.fit_head(d.X_fit, y_fit, d.splits.X_val, y_val, 3, CFG, seed=3)
    p = keras_head.predict_proba(m1, d.splits.X_test)
    assert np.allclose(p.sum(1), 1.0, atol=1e-12)
    assert (np.asarray(d.classes)[p.argmax(1)] == d.splits.y_test).all()
    assert {"epoch", "loss", "val_loss", "accuracy", "val_accuracy"} <= set(h1.columns)
    assert 1 <= info["best_epoch"] <= info["epochs_run"] <= CFG.epochs
    assert np.array_equal(h1.to_numpy(), h2.to_numpy())  # same seed, same curve
    arrays = head_arrays(m1)
    assert arrays["dense_kernel"].shape == (8, 16) and arrays["out_kernel"].shape == (16, 3)
    # the npz weights reproduce the Keras head (Grad-CAM in torch rebuilds it from them)
    h = np.maximum(d.splits.X_test @ arrays["dense_kernel"] + arrays["dense_bias"], 0)
    z = h @ arrays["out_kernel"] + arrays["out_bias"]
    manual = np.exp(z - z.max(1, keepdims=True))
    assert np.allclose(manual / manual.sum(1, keepdims=True), p, atol=1e-5)
    # head.npz (what Grad-CAM on a torch backbone reads) holds exactly those arrays
    save_head_npz(tmp_path / "head.npz", m1)
    with np.load(tmp_path / "head.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(HEAD_ARRAYS)
        for k in HEAD_ARRAYS:
            np.testing.assert_array_equal(z[k], arrays[k])


def test_train_classifier_head_only_scores_val_and_test():
    """A backbone without a Keras model (torch): the head alone, fitted on the fit rows, scored once on val
    and test; fine-tuning asked for is ignored with a warning."""

    from fkstudy.train import keras_head

    cat = catalog(n_per=10)
    X, ids = separable(cat)
    d = transfer.prepare(X, ids, cat, "base")
    r = transfer.train_classifier("efficientnet_lite0", "base", d, CFG, seed=3)
    assert r.full is None and r.unfreeze == 0 and r.proba.shape == (len(d.splits.y_test), 3)
    np.testing.assert_allclose(r.proba, keras_head.predict_proba(r.head, d.splits.X_test))
    assert (r.pred == d.splits.y_test).all() and r.test["accuracy"] == 1.0 and r.val["n"] == len(d.splits.y_val)
    assert list(r.history["epoch"]) == list(range(1, r.info["epochs_run"] + 1))
    assert 1 <= r.info["best_epoch"] <= r.info["epochs_run"] and r.timings["fit_seconds"] > 0
    ex = r.examples(2, seed=0)
    assert len(ex) == 2 and set(ex) <= set(range(len(d.splits.y_test)))  # all correct: no incorrect example
    # the augmented variant never unfreezes (that is the finetuned variant), and a torch backbone has no finetuned one
    r2 = transfer.train_classifier("efficientnet_lite0", "augmented", d, CFG, seed=3)
    assert r2.unfreeze == 0 and r2.full is None
    with pytest.raises(ValueError, match="the finetuned variant is fkstudy.train.fine_tune.fine_tune_classifier"):
        transfer.train_classifier("efficientnet_lite0", "finetuned", d, CFG, seed=3)


def test_one_call_per_epoch_keeps_the_per_epoch_history(monkeypatch):
    """fit_head runs a whole epoch per compiled call (steps_per_execution): the same batches, in the same order,
    give the same per-epoch history as one call per batch."""
    import keras

    from fkstudy.train import keras_head

    cat = catalog(n_per=10)
    X, ids = separable(cat)
    d = transfer.prepare(X, ids, cat, "base")
    args = (d.X_fit, transfer.to_index(d.y_fit, d.classes), d.splits.X_val,
            transfer.to_index(d.splits.y_val, d.classes), 3, CFG.model_copy(update={"batch_size": 4}))
    seen = []
    compile_ = keras.Model.compile

    def spy(self, *a, **kw):
        seen.append(kw.get("steps_per_execution", 1))
        return compile_(self, *a, **kw)

    monkeypatch.setattr(keras.Model, "compile", spy)
    _, per_epoch, _ = keras_head.fit_head(*args, seed=5)
    monkeypatch.setattr(keras.Model, "compile", lambda self, *a, **kw: spy(self, *a, **{**kw, "steps_per_execution": 1}))
    _, per_batch, _ = keras_head.fit_head(*args, seed=5)
    assert seen == [4, 1]  # 15 train rows in batches of 4: one call per epoch, then one per batch
    pd.testing.assert_frame_equal(per_epoch, per_batch, check_exact=True)


def test_unknown_optimizer_names_the_param():
    from fkstudy.train import keras_head

    with pytest.raises(ValueError, match="train.optimizer"):
        keras_head.make_optimizer("adagrad", 0.1)


def test_assembled_model_equals_backbone_then_head():
    import keras

    from fkstudy.train import keras_head

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    backbone = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    head = keras_head.build_head(4, 3, units=8)
    full = keras_head.assemble(backbone, head)
    imgs = np.random.default_rng(0).normal(size=(5, 16, 16, 3)).astype(np.float32)
    expected = head.predict(backbone.predict(imgs, verbose=0), verbose=0)
    assert np.allclose(full.predict(imgs, verbose=0), expected, atol=1e-6)
    assert not backbone.trainable


# ------------------------------------------------------------------------------------ zero-shot
def test_zero_shot_picks_the_nearest_prompt():
    text = np.eye(3)
    image = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8], [0.1, 0.7, 0.1]])
    p = Z.zero_shot_proba(image, text)
    assert list(p.argmax(1)) == [0, 2, 1] and np.allclose(p.sum(1), 1)


def test_zero_shot_prompts_and_shape_errors():
    assert Z.prompts(["Watches", "Baby Care"], "a photo of {}") == ["a photo of watches", "a photo of baby care"]
    with pytest.raises(ValueError, match="template"):
        Z.prompts(["x"], "no placeholder")
    with pytest.raises(ValueError, match="same d"):
        Z.zero_shot_proba(np.ones((2, 3)), np.ones((2, 4)))
