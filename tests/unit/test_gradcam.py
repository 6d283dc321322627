"""Grad-CAM on tiny hand-built models whose answer is known, the overlay, the example choice and the grid.

Images are grey noise with a red (class 0) or green (class 1) 8 x 8 square at a random aligned place
of a 32 x 32 image. The backbone averages 4 x 4 pixels, then a 1 x 1 convolution with hand-set
weights detects "red" (channel 0) and "green" (channel 1): the feature map is non-zero only under
the square, so the class's Grad-CAM map must peak there and be zero far from it. An image without a
square gives an all-zero feature map: its map must be all zeros, not NaN.

torch tests come first and the Keras ones build their models in their own functions (tests/conftest.py
imports torch before TensorFlow can be imported).
"""
import numpy as np
import pytest

from fkstudy.files import FeatureFileError
from fkstudy.plots.gradcam import overlay
from fkstudy.train import gradcam as G
from fkstudy.train.head_npz import torch_head_from_npz

SIZE, SQ = 32, 8
DETECT_W = np.array([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]], np.float32)  # [rgb, channel]
DETECT_B = np.array([-0.3, -0.3], np.float32)
HEAD = {"dense_kernel": np.eye(2, dtype=np.float32), "dense_bias": np.zeros(2, np.float32),
        "out_kernel": np.array([[4.0, -4.0], [-4.0, 4.0]], np.float32), "out_bias": np.zeros(2, np.float32)}


def square_images(n=6, seed=0):
    """(float images [n, 32, 32, 3] in [0, 1], labels, square corners (row, col)); the last image
    has no square (label -1)."""
    rng = np.random.default_rng(seed)
    x = (0.5 + rng.uniform(-0.05, 0.05, (n, SIZE, SIZE, 3))).astype(np.float32)
    labels, corners = [], []
    for i in range(n - 1):
        r, c = rng.integers(0, SIZE // SQ, 2) * SQ
        cls = i % 2
        x[i, r:r + SQ, c:c + SQ] = (1.0, 0.0, 0.0) if cls == 0 else (0.0, 1.0, 0.0)
        labels.append(cls)
        corners.append((int(r), int(c)))
    labels.append(-1)
    corners.append(None)
    return x, np.array(labels), corners


def assert_maps_localise(maps, labels, corners):
    assert maps.dtype == np.float32 and maps.shape == (len(labels), SIZE, SIZE)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    for m, label, corner in zip(maps, labels, corners):
        if corner is None:  # no square: all-zero feature map -> all-zero heat map
            np.testing.assert_array_equal(m, 0.0)
            continue
        r, c = corner
        peak = np.unravel_index(np.argmax(m), m.shape)
        assert r <= peak[0] < r + SQ and c <= peak[1] < c + SQ, (label, corner, peak)
        assert m.max() == pytest.approx(1.0)
        far = np.ones_like(m, bool)
        far[max(r - SQ, 0):r + 2 * SQ, max(c - SQ, 0):c + 2 * SQ] = False
        assert np.all(m[far] == 0.0)
        assert m[r:r + SQ, c:c + SQ].mean() > 0.5


# --------------------------------------------------------------------------- torch
def torch_backbone():
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool2d(4)
            self.detect = nn.Conv2d(3, 2, 1)
            with torch.no_grad():
                self.detect.weight.copy_(torch.from_numpy(DETECT_W.T.reshape(2, 3, 1, 1).copy()))
                self.detect.bias.copy_(torch.from_numpy(DETECT_B))

        def extract_features(self, x):
            return torch.relu(self.detect(self.pool(x)))

    return Tiny()


def test_torch_head_from_npz_matches_numpy(tmp_path):
    import torch

    rng = np.random.default_rng(1)
    arrays = {"dense_kernel": rng.normal(size=(5, 4)), "dense_bias": rng.normal(size=4),
              "out_kernel": rng.normal(size=(4, 3)), "out_bias": rng.normal(size=3)}
    np.savez(tmp_path / "head.npz", **arrays)
    head = torch_head_from_npz(tmp_path / "head.npz")
    x = rng.normal(size=(6, 5)).astype(np.float32)
    with torch.no_grad():
        got = head(torch.from_numpy(x)).numpy()
    z = np.maximum(x @ arrays["dense_kernel"] + arrays["dense_bias"], 0) @ arrays["out_kernel"] + arrays["out_bias"]
    want = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(got, want / want.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert not head.training


def test_torch_head_from_npz_errors(tmp_path):
    with pytest.raises(FeatureFileError, match="not found"):
        torch_head_from_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", dense_kernel=np.zeros((2, 3)))
    with pytest.raises(FeatureFileError, match=r"missing arrays \['dense_bias'"):
        torch_head_from_npz(tmp_path / "bad.npz")
    with pytest.raises(FeatureFileError, match="inconsistent head shapes"):
        torch_head_from_npz({**HEAD, "out_kernel": np.zeros((3, 2), np.float32)})


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_gradcam_torch_localises_the_square(tmp_path, score):
    import torch

    np.savez(tmp_path / "head.npz", **HEAD)
    backbone, head = torch_backbone(), torch_head_from_npz(tmp_path / "head.npz")
    x, labels, corners = square_images()
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        pred = head(backbone.extract_features(torch.from_numpy(nchw)).mean(dim=(2, 3))).argmax(1).numpy()
    np.testing.assert_array_equal(pred[:-1], labels[:-1])  # the hand-set model is right
    backbone.train()
    maps = G.gradcam_torch(backbone, head, nchw, pred, batch_size=4, score=score)
    assert backbone.training and not head.training  # modes restored
    assert_maps_localise(maps, labels, corners)
    # a tensor input and batch size 1 give the same maps
    np.testing.assert_allclose(G.gradcam_torch(backbone, head, torch.from_numpy(nchw), pred, batch_size=1,
                                               score=score), maps, atol=1e-6)


def test_gradcam_torch_rejects_bad_input():
    import torch

    backbone, head = torch_backbone(), torch_head_from_npz(HEAD)
    x = np.zeros((2, 3, SIZE, SIZE), np.float32)
    with pytest.raises(ValueError, match="class_index must be 2 integers"):
        G.gradcam_torch(backbone, head, x, [0])
    with pytest.raises(ValueError, match="out of range"):
        G.gradcam_torch(backbone, head, x, [0, 5])
    with pytest.raises(ValueError, match="nn.Softmax"):
        G.gradcam_torch(backbone, torch.nn.Linear(2, 2), x, [0, 1])
    with pytest.raises(ValueError, match="score must be"):
        G.gradcam_torch(backbone, head, x, [0, 1], score="raw")


# --------------------------------------------------------------------------- Keras
def keras_model(trainable=True, nested=True):
    """The contract's shape: input -> backbone (nested sub-model) -> GAP -> head (nested Sequential)."""
    import keras

    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.AveragePooling2D(4, name="avg")(inp)
    detect = keras.layers.Conv2D(2, 1, activation="relu", name="detect")
    x = detect(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)  # auto-pick must skip the pooling layer
    detect.set_weights([DETECT_W.reshape(1, 1, 3, 2), DETECT_B])
    head = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="relu", name="dense"),
                             keras.layers.Dropout(0.5), keras.layers.Dense(2, activation="softmax", name="out")],
                            name="head")
    head.get_layer("dense").set_weights([HEAD["dense_kernel"], HEAD["dense_bias"]])
    head.get_layer("out").set_weights([HEAD["out_kernel"], HEAD["out_bias"]])
    if not nested:  # one flat functional model
        y = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        dense, out = keras.layers.Dense(2, activation="relu"), keras.layers.Dense(2, activation="softmax")
        model = keras.Model(inp, out(keras.layers.Dropout(0.5)(dense(y))), name="flat")
        dense.set_weights([HEAD["dense_kernel"], HEAD["dense_bias"]])
        out.set_weights([HEAD["out_kernel"], HEAD["out_bias"]])
        return model
    backbone = keras.Model(inp, x, name="backbone")
    backbone.trainable = trainable
    outer_in = keras.Input((SIZE, SIZE, 3))
    y = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(outer_in))
    return keras.Model(outer_in, head(y), name="classifier")


def test_gradcam_keras_nested_backbone_localises_the_square(tmp_path):
    import keras

    model = keras_model(trainable=False)  # frozen backbone, as in the train stage
    x, labels, corners = square_images()
    pred = model.predict(x, verbose=0).argmax(1)
    np.testing.assert_array_equal(pred[:-1], labels[:-1])
    assert G.keras_target_layer(model) == "detect"
    maps = G.gradcam_keras(model, x, pred, batch_size=4)
    assert_maps_localise(maps, labels, corners)
    np.testing.assert_allclose(G.gradcam_keras(model, x, pred, layer_name="detect", batch_size=1), maps, atol=1e-6)
    prob_maps = G.gradcam_keras(model, x, pred, score="probability")
    assert_maps_localise(prob_maps, labels, corners)
    # the model as the train stage saves it (model.keras) gives the same maps
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(G.gradcam_keras(loaded, x, pred), maps, atol=1e-6)


def test_gradcam_keras_flat_model_and_errors():
    model = keras_model(nested=False)
    x, labels, corners = square_images()
    pred = model.predict(x, verbose=0).argmax(1)
    assert G.keras_target_layer(model) == "detect"
    assert_maps_localise(G.gradcam_keras(model, x, pred), labels, corners)
    with pytest.raises(ValueError, match="no layer 'block5_conv3'"):
        G.gradcam_keras(model, x, pred, layer_name="block5_conv3")
    with pytest.raises(ValueError, match="4-D"):
        G.gradcam_keras(model, x, pred, layer_name="gap")
    with pytest.raises(ValueError, match="out of range"):
        G.gradcam_keras(model, x, np.full(len(x), 2))
    with pytest.raises(ValueError, match=r"images must be \[n, H, W, C\]"):
        G.gradcam_keras(model, x[0], pred[:1])


def test_gradcam_keras_on_vgg16_picks_block5_conv3():
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    inp = keras.Input((32, 32, 3))
    y = keras.layers.GlobalAveragePooling2D()(base(inp))
    y = keras.layers.Dense(8, activation="relu")(y)
    model = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(keras.layers.Dropout(0.5)(y)))
    x = np.random.default_rng(0).normal(0, 50, (2, 32, 32, 3)).astype(np.float32)
    assert G.keras_target_layer(model) == "block5_conv3"
    maps = G.gradcam_keras(model, x, model.predict(x, verbose=0).argmax(1))
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and 0 <= maps.min() <= maps.max() <= 1


# --------------------------------------------------------------------------- framework-free
def test_cam_from_gradients_zero_and_upsampling():
    A = np.zeros((2, 4, 4, 3), np.float32)
    A[1, 0, 0, 0] = 2.0
    grads = np.ones_like(A)
    maps = G.cam_from_gradients(A, grads, (16, 16))
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps[0], 0.0)
    assert maps[1].max() == pytest.approx(1.0) and maps[1][:2, :2].min() == pytest.approx(1.0)
    assert maps[1][8:, 8:].max() == 0.0
    # negative evidence is cut by the ReLU: a map with only negative values is all zeros
    np.testing.assert_array_equal(G.cam_from_gradients(A, -grads, (16, 16)), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        G.cam_from_gradients(np.full_like(A, np.nan), grads, (16, 16))


def test_overlay():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    heat = rng.uniform(0, 1, (10, 12)).astype(np.float32)
    out = overlay(img, heat)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(overlay(img, heat, alpha=0.0), img)
    full = overlay(img, np.zeros((10, 12)), alpha=1.0)  # jet at 0 is dark blue everywhere
    assert (full[..., 2] > 100).all() and (full[..., :2] == 0).all()
    with pytest.raises(ValueError, match="heatmap shape"):
        overlay(img, heat[:5])
    with pytest.raises(ValueError, match="uint8"):
        overlay(img.astype(np.float32), heat)


def test_select_examples_rule_and_determinism():
    y_true = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    y_pred = np.array([0, 1, 0, 0, 2, 2, 1, 1])
    proba = np.full((8, 3), 0.1)
    proba[np.arange(8), y_pred] = [0.9, 0.6, 0.95, 0.9, 0.7, 0.8, 0.5, 0.9]
    correct, incorrect = G.select_examples(y_true, y_pred, proba, n=3, seed=0)
    assert correct.dtype == np.int64 and len(correct) == 3 and len(incorrect) == 3
    assert set(correct) <= {0, 3, 7} and list(incorrect) == [2, 4, 6]  # most confident first
    for seed in range(5):  # ties (0.9 for 0, 3, 7) broken by the seed, reproducibly
        a, b = G.select_examples(y_true, y_pred, proba, 3, seed), G.select_examples(y_true, y_pred, proba, 3, seed)
        np.testing.assert_array_equal(a[0], b[0])
        assert sorted(a[0]) == [0, 3, 7]
    assert {tuple(G.select_examples(y_true, y_pred, proba, 3, s)[0]) for s in range(20)} != {tuple(correct)}
    c, i = G.select_examples(y_true, y_pred, proba, n=10, seed=0)  # fewer when fewer exist
    assert len(c) == 5 and len(i) == 3 and proba[c, y_pred[c]].tolist() == sorted(proba[c, y_pred[c]], reverse=True)
    c, i = G.select_examples(y_true, y_true, proba, n=2, seed=0)
    assert len(c) == 2 and len(i) == 0
    with pytest.raises(ValueError, match="same number of rows"):
        G.select_examples(y_true, y_pred[:3], proba, 2)


def test_gradcam_grid(tmp_path):
    from matplotlib.figure import Figure

    from fkstudy.files import save_figure
    from fkstudy.plots.gradcam import example_title, gradcam_grid

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    titles = [example_title("Beauty and Personal Care", "Home Decor & Festive Needs", 0.934)] * 5
    assert titles[0] == "Beauty and Personal Care / Home Decor & Festive Needs (0.93)"
    fig = gradcam_grid(imgs, imgs, titles, ncols=3, title="correct")
    assert isinstance(fig, Figure)
    assert sum(bool(ax.images) for ax in fig.axes) == 10 and len(fig.axes) == 12
    save_figure(fig, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0
    assert sum(bool(ax.images) for ax in gradcam_grid(None, imgs, titles, ncols=2).axes) == 5
    assert len(gradcam_grid(None, imgs[:0], [], ncols=3).axes) == 1
    with pytest.raises(ValueError, match="counts must match"):
        gradcam_grid(imgs, imgs, titles[:2])
