"""Deep image features: what every deep extractor shares (streaming the uint8 cache batch by batch,
timing, parameter counts, thread settings) and the dispatch through the image registry.

The extractors themselves are in fkstudy.image.keras_models (TensorFlow) and
fkstudy.image.torch_models (torch). Only one batch is ever converted to float: the cache stays uint8.
Frameworks are imported inside the functions, so a stage process touches TensorFlow or torch, never both.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

import numpy as np

from ..precision import PRECISIONS, autocast, warn_if_emulated  # noqa: F401  (used by both frameworks' extractors)

log = logging.getLogger("fkstudy")


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
    from ..frameworks import tensorflow

    tf = tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n_jobs)
        tf.config.threading.set_inter_op_parallelism_threads(min(n_jobs, 2))
    except RuntimeError:  # already initialised: keep the current setting
        log.debug("TensorFlow threads already fixed at %s",
                  tf.config.threading.get_intra_op_parallelism_threads())


def set_torch_threads(n_jobs: int) -> None:
    import torch

    torch.set_num_threads(n_jobs)


def extract(name: str, images: np.ndarray, params, ctx) -> tuple[np.ndarray, dict]:
    """Deep entry `name` of the image registry on the images (`params`: its `deep_features.<name>` section)."""
    from .registry import IMAGE

    return IMAGE.check(name, "deep").load()(images, params, ctx)
