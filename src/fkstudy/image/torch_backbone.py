"""Any torch backbone of the image registry, run through its `Backbone` spec (fkstudy.image.registry).

The pipeline's extractor (`extractor(name)`, the registry function of deep_features@<name>), the served image
encoder (fkstudy.predict.encoders) and Grad-CAM (fkstudy.train.explain) all use these functions, so a torch
backbone is declared once and computes the same features everywhere:

    network  = load(name, policy, seed)                   the spec's load: weights resolved, eval mode
    x        = input_fn(name, settings)(uint8 images)     the spec's preprocess
    features = global average of feature_map(name)(network, x), float32 whatever the compute precision

The extractor and the predictor run the network in channels-last memory (`for_inference`) with the
`precision` setting's autocast; torch is imported inside the functions.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ..registry import resolve
from .deep import autocast, check_images, set_torch_threads, timed_extract
from .registry import IMAGE, Backbone, backbone_spec
from .weights import WeightsPolicy


def spec(name: str) -> Backbone:
    """The Backbone spec of torch backbone `name` (a Keras one, or a deep entry that is no backbone, is refused)."""
    found = backbone_spec(name)
    framework = IMAGE[name].framework
    if framework != "torch":
        raise ValueError(f"{name!r} is a {framework} backbone, not a torch one")
    return found


def load(name: str, policy: WeightsPolicy, seed: int = 0):
    """(network, weights record) of torch backbone `name`, by its spec's load function."""
    return resolve(spec(name).load)(name, policy, seed)


def input_fn(name: str, settings: Mapping) -> Callable[[np.ndarray], object]:
    """uint8 NHWC images -> the network's input tensor, by the spec's preprocess."""
    return resolve(spec(name).preprocess)(name, settings)


def feature_map(name: str) -> Callable:
    """(network, x) -> the last convolutional map [n, K, h, w], the spec's feature_map."""
    return resolve(spec(name).feature_map)


def for_inference(net):
    """channels-last (NHWC) memory: oneDNN's depthwise convs run ~2x faster on this CPU (measured on
    EfficientNet-Lite)."""
    import torch

    return net.to(memory_format=torch.channels_last)


def pooled(net, fmap: Callable, x, precision: str = "float32") -> np.ndarray:
    """Global average of `fmap(net, x)` (x made channels-last, as `for_inference`'s network), float32."""
    import torch

    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(precision):
        return fmap(net, x).float().mean(dim=(2, 3)).numpy()


def batch_features(name: str, net, settings: Mapping) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 NHWC batch -> pooled features [b, K] of `net` (from `for_inference`), with the preprocess and the
    precision of `settings`."""
    prep, fmap = input_fn(name, settings), feature_map(name)
    precision = settings.get("precision", "float32")
    return lambda batch: pooled(net, fmap, prep(batch), precision)


def recorded_settings(name: str, settings: Mapping) -> dict:
    """What a feature file's meta (and the served bundle) must hold to rebuild the input: the spec's settings
    and the precision."""
    return {"precision": settings.get("precision", "float32"), **{k: settings[k] for k in spec(name).settings}}


def extract(name: str, images: np.ndarray, settings: Mapping, *, batch_size: int = 32,
            policy: WeightsPolicy = WeightsPolicy(), n_jobs: int = 1, seed: int = 0,
            timings: dict | None = None) -> tuple[np.ndarray, dict]:
    """Globally average-pooled features of torch backbone `name` on uint8 images ([n, K] float32) and the
    record (weights, settings) for the feature file's meta."""
    check_images(images)
    set_torch_threads(n_jobs)
    X, rec = timed_extract(images, batch_size, lambda: load(name, policy, seed),
                           lambda net: batch_features(name, for_inference(net), settings), timings)
    rec.update({"extractor": name, "framework": "torch", "variant": "gap", "dim": int(X.shape[1]),
                "batch_size": batch_size, **recorded_settings(name, settings)})
    return X, rec


def extractor(name: str) -> Callable:
    """The image-registry function `fn(images, params, ctx) -> (X, record)` of torch backbone `name`."""
    def run(images: np.ndarray, p, ctx) -> tuple[np.ndarray, dict]:
        return extract(name, images, p.model_dump(), batch_size=p.batch_size, policy=ctx.weights,
                       n_jobs=ctx.n_jobs, seed=ctx.seed, timings=ctx.timings)
    run.__name__ = name
    return run
