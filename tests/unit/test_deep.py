"""Deep extractors on tiny generated images: shapes, dtype, determinism, batch-size invariance,
weights provenance. torch is imported before TensorFlow by tests/conftest.py."""

import numpy as np
import pytest

from fkstudy.image import deep
from fkstudy.image import weights as W

SIZE = 64


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture
def empty_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "keras_cache_dirs", lambda: [tmp_path / "keras_home" / "models"])


def policy(path, random_ok=False):
    return deep.WeightsPolicy(dir=str(path), allow_random_init=random_ok, allow_download=False)


# --------------------------------------------------------------------------- framework-free helpers
def test_stream_fills_rows_in_order(images):
    X = deep.stream(images, 3, lambda b: b.reshape(len(b), -1)[:, :2].astype(np.float64))
    assert X.dtype == np.float32 and X.shape == (4, 2)
    np.testing.assert_array_equal(X, images.reshape(4, -1)[:, :2])


def test_stream_rejects_float_images_and_bad_batch(images):
    with pytest.raises(ValueError, match="uint8"):
        deep.stream(images.astype(np.float32), 2, lambda b: b)
    with pytest.raises(ValueError, match="batch_size"):
        list(deep.batch_slices(4, 0))


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown deep extractor"):
        deep.extract("resnet", np.zeros((1, 8, 8, 3), np.uint8), {"batch_size": 1}, deep.WeightsPolicy())


# --------------------------------------------------------------------------- EfficientNet-Lite0 (torch)
def test_lite0_packaged_weights_shapes_determinism_batch_invariance(images, tmp_path, no_network):
    X1, rec = deep.extract_lite0(images, batch_size=4, policy=policy(tmp_path / "weights"))
    X2, _ = deep.extract_lite0(images, batch_size=1, policy=policy(tmp_path / "weights"))
    X3, _ = deep.extract_lite0(images, batch_size=4, policy=policy(tmp_path / "weights"))
    assert X1.shape == (4, 1280) and X1.dtype == np.float32 and np.isfinite(X1).all()
    np.testing.assert_array_equal(X1, X3)
    np.testing.assert_allclose(X1, X2, rtol=1e-4, atol=1e-4)
    if rec["weights"] != "random-init":  # the pip package ships ImageNet weights
        assert rec["weights"] == "imagenet" and rec["origin"] == "cache" and len(rec["sha256"]) == 64


def test_lite0_uses_file_in_local_dir(images, tmp_path, no_network):
    import torch

    torch.manual_seed(1)
    net = deep.build_lite0(None)
    local = tmp_path / "weights"
    local.mkdir()
    torch.save(net.state_dict(), local / W.LITE0_FILE)
    X, rec = deep.extract_lite0(images, batch_size=2, normalization="inception", policy=policy(local))
    assert rec["origin"] == "local" and rec["source"] == str(local / W.LITE0_FILE)
    assert rec["sha256"] == W.sha256_file(local / W.LITE0_FILE)
    mean, std = deep.LITE0_NORMS["inception"]
    with torch.inference_mode():
        want = net.extract_features(deep.to_nchw(images, mean, std)).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(X, want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- Keras
def test_vgg16_uses_file_in_local_dir(images, tmp_path, no_network):
    """The path of a user who dropped weights into weights/: no download, provenance recorded."""
    import keras

    keras.utils.set_random_seed(3)
    local = tmp_path / "weights"
    local.mkdir()
    ref = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3), pooling="avg")
    ref.save_weights(str(local / W.VGG16_LOCAL))
    X, rec = deep.extract_keras("vgg16", images, batch_size=3, policy=policy(local))
    assert X.shape == (4, 512) and X.dtype == np.float32
    assert rec["weights"] == "imagenet" and rec["origin"] == "local"  # label = what the file is meant to be
    assert rec["sha256"] == W.sha256_file(local / W.VGG16_LOCAL)
    want = ref.predict_on_batch(keras.applications.vgg16.preprocess_input(images.astype(np.float32)))
    np.testing.assert_allclose(X, want, rtol=1e-4, atol=1e-4)
    Xf, recf = deep.extract_keras("vgg16", images, batch_size=4, variant="flatten", policy=policy(local))
    assert Xf.shape == (4, (SIZE // 32) ** 2 * 512) and recf["variant"] == "flatten"


def test_keras_random_init_is_labelled_deterministic_and_batch_invariant(images, tmp_path, no_network,
                                                                         empty_keras_cache):
    with pytest.warns(W.RandomInitWarning):
        X1, rec = deep.extract_keras("mobilenetv3small", images, batch_size=4,
                                     policy=policy(tmp_path / "weights", random_ok=True), seed=7)
    with pytest.warns(W.RandomInitWarning):
        X2, _ = deep.extract_keras("mobilenetv3small", images, batch_size=1,
                                   policy=policy(tmp_path / "weights", random_ok=True), seed=7)
    assert X1.shape == (4, 576) and X1.dtype == np.float32
    assert rec["weights"] == "random-init" and rec["pretrained"] is False and rec["source"] is None
    np.testing.assert_allclose(X1, X2, rtol=1e-4, atol=1e-5)


def test_keras_missing_weights_without_random_init_is_an_error(images, tmp_path, no_network, empty_keras_cache):
    with pytest.raises(W.MissingWeightsError, match="efficientnetb0_notop.h5"):
        deep.extract_keras("efficientnetb0", images, batch_size=4, policy=policy(tmp_path / "weights"))


# --------------------------------------------------------------------------- CLIP (torch)
@pytest.mark.slow
def test_clip_image_and_text_embeddings(images, tmp_path, no_network):
    """Real weights when a cache has them, else labelled random init; both towers, unit vectors."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        X, rec = deep.extract_clip(images, batch_size=3, policy=policy(tmp_path / "weights", random_ok=True))
        T, trec = deep.clip_text_features(["analog wrist watch", "baby cotton towel", "laptop sleeve"],
                                          batch_size=2, policy=policy(tmp_path / "weights", random_ok=True))
    assert X.shape == (4, 512) and X.dtype == np.float32 and T.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, rtol=1e-5)
    assert rec["weights"] in ("openai", "random-init") and trec["weights"] == rec["weights"]
