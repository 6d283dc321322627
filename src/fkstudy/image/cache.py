"""The preprocessed-image cache every image extractor reads (data/interim/images.npz).

An uncompressed `.npz` holding
  images  uint8 [n, H, W, 3]   RGB, already resized (see fkstudy.image.preprocess)
  ids     unicode [n]          catalog `id` of each image, sorted
  meta    unicode scalar       JSON: size, aspect, decoding params, ...
loaded with allow_pickle=False. Uncompressed because the pixels barely compress and
loading must be fast for every extractor stage.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..files import FeatureFileError, _json_default, load_npz, save_npz

REQUIRED = ("images", "ids", "meta")


def _check(images: np.ndarray, ids: np.ndarray, where: str) -> None:
    if images.dtype != np.uint8:
        raise FeatureFileError(f"{where}: images must be uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise FeatureFileError(f"{where}: images must be [n, H, W, 3], got shape {images.shape}")
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise FeatureFileError(f"{where}: ids must be a 1-D array of strings, got {ids.dtype} {ids.shape}")
    if len(ids) != images.shape[0]:
        raise FeatureFileError(f"{where}: {len(ids)} ids for {images.shape[0]} images")
    if len(set(ids.tolist())) != len(ids):
        raise FeatureFileError(f"{where}: duplicate ids")


def save_image_cache(path: str | os.PathLike, images: np.ndarray, ids, meta: dict) -> None:
    """Write the cache atomically (a killed stage never leaves a truncated file) and reproducibly."""
    images = np.asarray(images)
    ids = np.asarray([str(i) for i in ids], dtype=str) if len(ids) else np.zeros(0, dtype="<U1")
    _check(images, ids, str(path))
    save_npz(path, images=images, ids=ids, meta=np.asarray(json.dumps(meta, sort_keys=True, default=_json_default)))


def load_image_cache(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return (images uint8 [n, H, W, 3], ids unicode [n], meta dict); FeatureFileError if malformed."""
    images, ids, meta = load_npz(path, REQUIRED, "image cache", "the prep_images stage")
    _check(images, ids, str(path))
    if len(ids) == 0 or 0 in images.shape[1:3]:
        raise FeatureFileError(f"{path}: the image cache holds no usable image (shape {images.shape}); "
                               f"re-run prep_images and see reports/prep_images_failures.csv")
    return images, ids, meta


def resized(images: np.ndarray, size: int) -> np.ndarray:
    """The cached squares at a model's input `size` (the cache is made at the largest size a model takes):
    area interpolation to shrink, cubic to enlarge; the same array when the size already matches."""
    if images.shape[1:3] == (size, size):
        return images
    import cv2

    shrink = size < images.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, img in enumerate(images):
        out[i] = cv2.resize(img, (size, size), interpolation=interpolation)
    return out
