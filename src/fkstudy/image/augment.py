"""Seeded photo augmentation on uint8 images: horizontal flip, rotation, zoom, brightness.

Framework-neutral (PIL + numpy), so the same views feed Keras and torch backbones. Used to
precompute a fixed number of augmented views per training photo once (`train.augment.views`):
the frozen backbone then runs once per view instead of once per epoch.

One view = one affine warp about the image centre (rotation by a uniform angle in
[-rotation, rotation] degrees, scale by a uniform factor in [1 - zoom, 1 + zoom]; uncovered
corners are filled with white, the catalogue photos' background), a horizontal flip with
probability 1/2 when `flip`, then brightness scaled by a uniform factor in
[1 - brightness, 1 + brightness]. View k of image i depends only on (seed, i, k): adding
images or views never changes the views already drawn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import StudyError

WHITE = (255, 255, 255)


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    rotation: float = 15.0     # degrees, symmetric range
    zoom: float = 0.1          # relative, symmetric range
    brightness: float = 0.2    # relative, symmetric range

    def __post_init__(self):
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"augment.rotation must be in [0, 180] degrees, got {self.rotation}")
        if not 0 <= self.zoom < 1:
            raise ValueError(f"augment.zoom must be in [0, 1), got {self.zoom}")
        if not 0 <= self.brightness < 1:
            raise ValueError(f"augment.brightness must be in [0, 1), got {self.brightness}")


def draw(rng: np.random.Generator, cfg: AugmentConfig) -> dict:
    """The random parameters of one view."""
    return {"angle": float(rng.uniform(-cfg.rotation, cfg.rotation)),
            "scale": float(rng.uniform(1 - cfg.zoom, 1 + cfg.zoom)),
            "flip": bool(cfg.flip and rng.random() < 0.5),
            "brightness": float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))}


def apply(image: np.ndarray, angle: float, scale: float, flip: bool, brightness: float) -> np.ndarray:
    """One augmented copy of a uint8 [H, W, 3] image (same shape and dtype)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    if angle or scale != 1.0:
        # inverse map output -> input: rotate by -angle and shrink by 1/scale about the centre
        a, s = math.radians(angle), 1.0 / scale
        cos, sin = s * math.cos(a), s * math.sin(a)
        cx, cy = w / 2.0, h / 2.0
        coeffs = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
        pil = pil.transform((w, h), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=WHITE)
    out = np.asarray(pil)
    if flip:
        out = out[:, ::-1]
    if brightness != 1.0:
        out = np.clip(out.astype(np.float32) * brightness, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(out)


def views(images: np.ndarray, n_views: int, cfg: AugmentConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n_views augmented copies of every image: (uint8 [n * n_views, H, W, 3], source row index [n * n_views]).

    Row order: image 0 views 0..k-1, image 1 views 0..k-1, ... Each image gets its own RNG stream
    (SeedSequence(seed).spawn), so views are reproducible and independent of batch boundaries.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [n, H, W, 3], got {images.dtype} {images.shape}")
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    streams = np.random.SeedSequence(seed).spawn(len(images))
    out = np.empty((len(images) * n_views, *images.shape[1:]), dtype=np.uint8)
    source = np.repeat(np.arange(len(images)), n_views)
    for i, (img, ss) in enumerate(zip(images, streams)):
        rng = np.random.default_rng(ss)
        for k in range(n_views):
            out[i * n_views + k] = apply(img, **draw(rng, cfg))
    return out, source


def train_views(images: np.ndarray, ids, train_ids, cfg, seed: int) -> tuple[np.ndarray, list[str]]:
    """`cfg.views` augmented views of every photo whose id is in `train_ids` (val / test photos are never
    augmented): (uint8 views, view ids "<product id>#<k>")."""
    ids = np.asarray(ids)
    rows = np.flatnonzero([i in train_ids for i in ids.tolist()])
    if len(rows) == 0:
        raise StudyError("augment: no train photos in the image cache (check the catalog split)")
    config = AugmentConfig(flip=cfg.flip, rotation=cfg.rotation, zoom=cfg.zoom, brightness=cfg.brightness)
    out, source = views(images[rows], cfg.views, config, seed)
    view_ids = [f"{ids[rows[s]]}#{k}" for s, k in zip(source, np.tile(np.arange(cfg.views), len(rows)))]
    return out, view_ids
