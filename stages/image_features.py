"""Stage image_features@<method>: one extractor over the whole image cache -> one feature file.

    python stages/image_features.py <method>

Each entry of METHODS is `fn(images, ids, catalog, method_params, params) -> (X, info)`:
images uint8 [n, H, W, 3] and ids from data/interim/images.npz, the catalog (for `split`),
params["image_features"][method], the whole params; X float32 [n, d] in the order of `ids`,
info a dict stored in the feature file's meta (its scalar entries also go to the metrics).
Deep extractors (fkstudy.image.deep) read params["deep_features"][method] and params["pretrained"];
a process runs one method, hence TensorFlow (vgg16, efficientnetb0, mobilenetv3small) or torch
(efficientnet_lite0, clip), never both. Their info carries the weights status ("imagenet",
"openai" or "random-init"), source file, sha256 and inference images/s.
"""
import _bootstrap  # noqa: F401
import sys
import time

import pandas as pd

from fkstudy import io
from fkstudy.image import classical as C
from fkstudy.image import deep
from fkstudy.image.cache import load_image_cache
from fkstudy.runtime import log, start_stage


def classical(images, ids, catalog, p, params):
    cfg = C.ClassicalConfig(**p)
    X = C.classical_features(images, n_jobs=params["n_jobs"], cfg=cfg)
    return X, {f"dim_{k}": v for k, v in cfg.block_dims().items()}


def bovw(kind):
    def run(images, ids, catalog, p, params):
        train_ids = set(catalog.loc[catalog["split"] == "train", "id"])  # codebook + idf fitted on these only
        return C.bovw_features(images, ids, train_ids, kind, seed=params["seed"], n_jobs=params["n_jobs"], **p)
    return run


def deep_method(name):
    def run(images, ids, catalog, p, params):
        policy = deep.WeightsPolicy.from_params(params["pretrained"])
        return deep.extract(name, images, p, policy, n_jobs=params["n_jobs"], seed=params["seed"])
    return run


METHODS = {"classical": classical, "sift_bovw": bovw("sift"), "orb_bovw": bovw("orb"),
           **{m: deep_method(m) for m in deep.METHODS}}

if len(sys.argv) != 2 or sys.argv[1] not in METHODS:
    sys.exit(f"usage: python stages/image_features.py <method>, method in {sorted(METHODS)}")
method = sys.argv[1]
params = start_stage(f"image_features@{method}")
method_params = params["deep_features" if method in deep.METHODS else "image_features"][method]
images, ids, cache_meta = load_image_cache("data/interim/images.npz")
catalog = pd.read_parquet("data/interim/catalog.parquet")

t0 = time.perf_counter()
X, info = METHODS[method](images, ids, catalog, method_params, params)
seconds = time.perf_counter() - t0

meta = {"extractor": method, "params": method_params, "seed": params["seed"], "weights": "none",
        "image_cache": {k: cache_meta.get(k) for k in ("size", "aspect", "jpeg_draft")}, **info}
io.save_features(f"data/features/image/{method}.npz", X, ids, meta)
metrics = {"dim": int(X.shape[1]), "n_images": int(X.shape[0]), "seconds": round(seconds, 3),
           "images_per_second": round(X.shape[0] / seconds, 1) if seconds > 0 else 0.0,
           **{k: v for k, v in info.items() if isinstance(v, (bool, int, float, str))}}
io.write_json(f"metrics/image_features/{method}.json", metrics)
log.info("%s: X %s in %.1fs", method, X.shape, seconds)
