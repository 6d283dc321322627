"""Run one image-registry entry over the whole image cache: what the image_features and deep_features
stages share (the feature file, its meta, the metrics and the timings they write)."""
from __future__ import annotations

from .. import files, paths
from ..data.catalog import load_catalog
from ..data.splits import split_ids
from ..registry import Context
from .cache import load_image_cache, resized
from .registry import IMAGE
from .weights import WeightsPolicy


def extract_representation(name: str, kind: str, method_params, params, timings: dict) -> tuple[dict, int]:
    """Entry `name` (of `kind`) on data/interim/images.npz -> data/features/image_<name>.npz.

    `method_params` is its params section; `params` the stage's declared params (seed, n_jobs and, for
    deep entries, pretrained). Returns (metrics, rows). Wall-clock figures go to `timings` only, so the
    metrics and the feature file are byte-identical between runs with the same params.
    """
    entry = IMAGE.check(name, kind)
    images, ids, cache_meta = load_image_cache(paths.IMAGE_CACHE)
    catalog = load_catalog(paths.CATALOG, features={paths.IMAGE_CACHE: ids})
    ctx = Context(ids=ids.tolist(), fit_ids=split_ids(catalog, "train"), seed=params.seed, n_jobs=params.n_jobs,
                  weights=WeightsPolicy.from_params(params.pretrained) if kind == "deep" else None, timings=timings)
    size = getattr(method_params, "input_size", None)
    X, info = entry.load()(images if size is None else resized(images, size), method_params, ctx)
    meta = {"extractor": name, "params": method_params.model_dump(), "seed": params.seed, "weights": "none",
            "image_cache": {k: cache_meta.get(k) for k in ("size", "aspect", "jpeg_draft")},
            "input_size": int(size or cache_meta.get("size")), **info}
    files.save_features(paths.features("image", name), X, ids, meta, **ctx.arrays)
    metrics = {"dim": int(X.shape[1]), "n_images": int(X.shape[0]),
               **{k: v for k, v in info.items() if isinstance(v, (bool, int, float, str))}}
    files.write_json(paths.metrics("image_features", name), metrics)
    return metrics, int(X.shape[0])
