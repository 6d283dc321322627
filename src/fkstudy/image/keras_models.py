"""Keras (TensorFlow) backbones of the image registry: VGG16 ("gap" 512-d | "flatten" 25088-d),
EfficientNetB0 (1280-d GAP), MobileNetV3Small (576-d GAP), each with its own keras preprocess_input.

The registry functions (`vgg16`, `efficientnetb0`, `mobilenetv3small`) have the signature
`fn(images, params, ctx) -> (X, record)`; the record carries the weights status from
fkstudy.image.weights plus the extractor's settings. `load_backbone` and `keras_preprocess` are the Keras
entries' `Backbone` functions (fkstudy.image.registry.keras_backbone: the spec's options name the
keras.applications constructor and preprocess module). TensorFlow is imported inside the functions.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import numpy as np

from ..frameworks import tensorflow
from .deep import PRECISIONS, check_images, set_tf_threads, timed_extract, warn_if_emulated
from .registry import IMAGE, backbone_spec, backbones, weight_spec
from .weights import WeightsPolicy, load_with_fallback


def _applications(method: str) -> tuple[str, str]:
    """(keras.applications constructor, module holding its preprocess_input) of a Keras registry entry."""
    if not is_keras(method):
        raise ValueError(f"not a Keras extractor: {method!r} (Keras entries: {list(backbones('keras'))})")
    options = backbone_spec(method).options
    return options["application"], options["module"]


def is_keras(method: str) -> bool:
    return IMAGE.check(method, "deep").framework == "keras"


def build_keras(method: str, image_size: tuple[int, int], weights: str | None, variant: str = "gap"):
    """The headless Keras backbone returning [b, d] features (`weights` = a file path or None)."""
    tensorflow()
    import keras

    if variant != "gap" and not (method == "vgg16" and variant == "flatten"):
        raise ValueError(f"{method}: unknown feature variant {variant!r} (gap, or flatten for vgg16)")
    ctor = getattr(keras.applications, _applications(method)[0])
    shape = (*image_size, 3)
    if variant == "flatten":  # block5_pool flattened: 7 x 7 x 512 = 25088-d at 224 x 224
        base = ctor(weights=weights, include_top=False, input_shape=shape, pooling=None)
        return keras.Model(base.input, keras.layers.Flatten(name="flatten")(base.output), name="vgg16_flatten")
    return ctor(weights=weights, include_top=False, input_shape=shape, pooling="avg")


@contextmanager
def compute_precision(precision: str):
    """Keras layers built in this block compute in `precision`: "bfloat16" is Keras' mixed_bfloat16 policy
    (float32 weights, bfloat16 matmuls / convolutions through oneDNN, AMX where the CPU has it)."""
    tensorflow()
    import keras

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bfloat16":
        warn_if_emulated()
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def load_keras(method: str, image_size: tuple[int, int], policy: WeightsPolicy, variant: str = "gap",
               seed: int = 0, precision: str = "float32"):
    """(model, weights record) following the weights resolution order, computing in `precision`."""
    with compute_precision(precision):
        return _load_keras(method, image_size, policy, variant, seed)


def _load_keras(method: str, image_size: tuple[int, int], policy: WeightsPolicy, variant: str, seed: int):
    tensorflow()
    import keras

    spec = weight_spec(method)

    def random_init():
        keras.utils.set_random_seed(seed)
        return build_keras(method, image_size, None, variant)

    return load_with_fallback(
        spec, policy.dir, allow_random_init=policy.allow_random_init, allow_download=policy.allow_download,
        from_file=lambda p: build_keras(method, image_size, str(p), variant),
        # keras.applications' own download into the Keras cache (needs network)
        download=lambda: build_keras(method, image_size, "imagenet", variant),
        random_init=random_init)


def load_backbone(method: str, policy: WeightsPolicy, seed: int = 0, size: int | None = None):
    """The Backbone load of a Keras entry: (headless model with global average pooling, weights record) for
    square inputs of side `size` (required: a Keras model is built for one input shape)."""
    if size is None:
        raise ValueError(f"{method}: a Keras backbone is built for one input size; give size")
    return load_keras(method, (size, size), policy, seed=seed)


def split_at(model, layer: str):
    """(prefix, suffix): `model` cut at the input of its layer `layer` — prefix(x) the activations there,
    suffix(prefix(x)) == model(x), the same layer objects. A layer the model lacks, or a connection across the
    cut (EfficientNet's skip connections), is a StudyError."""
    tensorflow()
    import keras

    from ..errors import StudyError

    names = [lay.name for lay in model.layers]
    if layer not in names:
        raise StudyError(f"{model.name}: no layer {layer!r} to cut at (layers: {names[1:4]} ... {names[-3:]})")
    cut = model.get_layer(layer).input
    try:
        return (keras.Model(model.input, cut, name=f"{model.name}_frozen"),
                keras.Model(cut, model.output, name=f"{model.name}_tuned"))
    except ValueError as exc:
        raise StudyError(f"{model.name}: its activations cannot be cut at the input of {layer!r} "
                         f"(a connection crosses the cut: {exc})") from None


def keras_preprocess(method: str, settings=None) -> Callable[[np.ndarray], np.ndarray]:
    """The Backbone preprocess of a Keras entry: its keras.applications preprocess_input (float images in
    0..255, arrays or tensors); it reads no setting."""
    import importlib

    module = importlib.import_module(f"keras.applications.{_applications(method)[1]}")
    return module.preprocess_input


def extract_keras(method: str, images: np.ndarray, *, batch_size: int = 32, variant: str = "gap",
                  policy: WeightsPolicy = WeightsPolicy(), n_jobs: int = 1, seed: int = 0,
                  timings: dict | None = None, precision: str = "float32", activations_at: str | None = None,
                  arrays: dict | None = None) -> tuple[np.ndarray, dict]:
    """Features of a keras.applications backbone, `preprocess_input` applied per batch (float32 features
    whatever the compute precision). `activations_at`: the model runs as prefix then suffix (`split_at`, the
    same features bit for bit) and the prefix's float32 outputs go to `arrays["activations"]`."""
    _applications(method)
    check_images(images)
    set_tf_threads(n_jobs)
    prep = keras_preprocess(method)
    acts: list[np.ndarray] = []

    def batch_fn(model):
        if activations_at is None:
            return lambda b: np.asarray(model.predict_on_batch(prep(b.astype(np.float32))), np.float32)
        prefix, suffix = split_at(model, activations_at)

        def through_prefix(b):
            acts.append(np.asarray(prefix.predict_on_batch(prep(b.astype(np.float32))), np.float32))
            return np.asarray(suffix.predict_on_batch(acts[-1]), np.float32)
        return through_prefix

    X, rec = timed_extract(
        images, batch_size, lambda: load_keras(method, tuple(images.shape[1:3]), policy, variant, seed, precision),
        batch_fn, timings)
    rec.update({"extractor": method, "framework": "keras", "variant": variant, "dim": int(X.shape[1]),
                "batch_size": batch_size, "preprocess": f"keras.applications.{_applications(method)[1]}"
                ".preprocess_input", "precision": precision})
    if activations_at is not None:
        if arrays is None:
            raise ValueError("activations_at needs an `arrays` dict to put the activations in")
        arrays["activations"] = np.concatenate(acts)
        rec["activations_at"] = activations_at
    return X, rec


def _run(method: str):
    def run(images: np.ndarray, p, ctx) -> tuple[np.ndarray, dict]:
        return extract_keras(method, images, batch_size=p.batch_size, variant=getattr(p, "variant", "gap"),
                             policy=ctx.weights, n_jobs=ctx.n_jobs, seed=ctx.seed, timings=ctx.timings,
                             precision=p.precision, activations_at=getattr(p, "activations_at", None),
                             arrays=ctx.arrays)
    run.__name__ = method
    return run


vgg16 = _run("vgg16")
efficientnetb0 = _run("efficientnetb0")
mobilenetv3small = _run("mobilenetv3small")
