"""torch models of the image registry: EfficientNet-Lite, a backbone (its `Backbone` functions: `load_lite`,
`lite_preprocess`, `lite_feature_map`; the spec's options["arch"] names the architecture; 1280-d pooled features
through fkstudy.image.torch_backbone), and CLIP (open_clip image embedding, L2-normalised; `clip_text_features`
for its text tower).

The registry functions (`efficientnet_lite0`, `efficientnet_lite2`, `clip`) have the signature `fn(images, params, ctx) ->
(X, record)`. torch is imported inside the functions: a TensorFlow process can import this module.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .deep import autocast, batch_slices, check_images, set_torch_threads, timed_extract
from .registry import backbone_spec, weight_spec
from .torch_backbone import extractor
from .weights import CLIP_SOURCES, WeightsPolicy, clip_spec, load_with_fallback

# Normalisation of EfficientNet-Lite inputs. "inception", (x - 127) / 128, is what the TF
# EfficientNet-Lite checkpoints (converted by efficientnet-lite-pytorch) were trained with
# (efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128, chosen for quantisation); "imagenet"
# mean/std is only the example its README inherits from EfficientNet-PyTorch (B0-B7). Measured on the
# 1047 catalogue photos, EfficientNet-Lite0 PCA-50 -> KMeans(7) ARI: inception 0.559, imagenet 0.479.
LITE_NORMS = {
    "inception": (np.array([127.0, 127.0, 127.0]), np.array([128.0, 128.0, 128.0])),
    "imagenet": (np.array([0.485, 0.456, 0.406]) * 255.0, np.array([0.229, 0.224, 0.225]) * 255.0),
}


def _lite_arch(name: str) -> str:
    arch = backbone_spec(name).options.get("arch", "")
    if not arch.startswith("efficientnet-lite"):
        raise ValueError(f"{name!r} is not an EfficientNet-Lite entry of the image registry")
    return arch


def build_lite(arch: str, weights_file: str | os.PathLike | None):
    """EfficientNet-Lite `arch` (e.g. "efficientnet-lite0") in eval mode; its state dict loaded with
    torch.load(weights_only=True), strict."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(arch)
    if weights_file is not None:
        state = torch.load(str(weights_file), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    return net.eval()


def load_lite(name: str, policy: WeightsPolicy, seed: int = 0, size: int | None = None):
    """(model, weights record) of EfficientNet-Lite registry entry `name`, following the resolution order (any
    input `size`: the network is fully convolutional)."""
    import torch

    arch = _lite_arch(name)

    def random_init():
        torch.manual_seed(seed)
        return build_lite(arch, None)

    return load_with_fallback(
        weight_spec(name), policy.dir, allow_random_init=policy.allow_random_init,
        allow_download=policy.allow_download, from_file=lambda path: build_lite(arch, path),
        download=None,  # the library has no URL for the Lite variants: the pip package is the source
        random_init=random_init)


def to_nchw(batch: np.ndarray, mean: np.ndarray, std: np.ndarray):
    """uint8 NHWC batch -> normalised float32 NCHW torch tensor."""
    import torch

    x = (batch.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def lite_input(images: np.ndarray, normalization: str):
    """uint8 NHWC images -> the normalised NCHW tensor an EfficientNet-Lite takes."""
    mean, std = LITE_NORMS[normalization]
    return to_nchw(images, mean, std)


def lite_preprocess(name: str, settings) -> Callable[[np.ndarray], object]:
    """The Backbone preprocess of an EfficientNet-Lite: uint8 NHWC -> NCHW normalised by settings["normalization"]."""
    normalization = settings["normalization"]
    if normalization not in LITE_NORMS:
        raise ValueError(f"{name}: normalization must be one of {list(LITE_NORMS)}, got {normalization!r}")
    return lambda images: lite_input(images, normalization)


def lite_feature_map(net, x):
    """The Backbone feature map of an EfficientNet-Lite: its last conv block, [n, 1280, h, w]."""
    return net.extract_features(x)


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
    quick_gelu = bool(CLIP_SOURCES.get((arch, tag), {}).get("quick_gelu", pcfg.get("quick_gelu", False)))

    def random_init():
        torch.manual_seed(seed)
        return build_clip(arch, None, quick_gelu)

    def download():
        model = open_clip.create_model(arch, pretrained=tag, force_quick_gelu=quick_gelu, device="cpu")
        return model.eval()

    return load_with_fallback(
        clip_spec(arch, tag), policy.dir, allow_random_init=policy.allow_random_init,
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
                 timings: dict | None = None, precision: str = "float32") -> tuple[np.ndarray, dict]:
    """L2-normalised CLIP image embeddings (512-d for ViT-B-32), float32 whatever the compute precision."""
    import torch

    check_images(images)
    set_torch_threads(n_jobs)

    def batch_fn(model):
        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode(), autocast(precision):
                emb = model.encode_image(clip_image_batch(model, batch)).float()
            return torch.nn.functional.normalize(emb, dim=-1).numpy()
        return run

    X, rec = timed_extract(images, batch_size, lambda: load_clip(arch, tag, policy, seed), batch_fn, timings)
    rec.update({"extractor": "clip", "framework": "torch", "arch": arch, "tag": tag, "dim": int(X.shape[1]),
                "batch_size": batch_size, "l2_normalized": True, "precision": precision})
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


efficientnet_lite0 = extractor("efficientnet_lite0")
efficientnet_lite2 = extractor("efficientnet_lite2")


def clip(images: np.ndarray, p, ctx) -> tuple[np.ndarray, dict]:
    return extract_clip(images, batch_size=p.batch_size, arch=p.arch, tag=p.tag, policy=ctx.weights,
                        n_jobs=ctx.n_jobs, seed=ctx.seed, timings=ctx.timings, precision=p.precision)
