"""Stage image_features@<method>: one extractor over the whole image cache -> one feature file.

    python stages/image_features.py <method>

Each entry of METHODS is `fn(images, ids, catalog, method_params, params, timings) -> (X, info)`:
images uint8 [n, H, W, 3] and ids from data/interim/images.npz, the catalog (for `split`),
params["image_features"][method], the whole params, a dict the extractor may add wall-clock
figures to; X float32 [n, d] in the order of `ids`, info a dict stored in the feature file's meta
(its scalar entries also go to the metrics). Timings go to reports/timings/{image,deep}_features/<method>.json
only, so metrics and feature files are byte-identical between runs with the same params.
Deep extractors (fkstudy.image.deep) read params["deep_features"][method] and params["pretrained"];
a process runs one method, hence TensorFlow (vgg16, efficientnetb0, mobilenetv3small) or torch
(efficientnet_lite0, clip), never both. Their info carries the weights status ("imagenet",
"openai" or "random-init"), source file and sha256; their load/extract seconds and images/s
go to the timings.
"""
import _bootstrap  # noqa: F401
import sys

import cv2

from fkstudy import io
from fkstudy.data.catalog import load_catalog
from fkstudy.image import classical as C
from fkstudy.image import deep
from fkstudy.image.cache import load_image_cache
from fkstudy.runtime import log, start_stage, timed, write_timings


def classical(images, ids, catalog, p, params, timings):
    cfg = C.ClassicalConfig(**p)
    X = C.classical_features(images, n_jobs=params["n_jobs"], cfg=cfg)
    return X, {f"dim_{k}": v for k, v in cfg.block_dims().items()}


def bovw(kind):
    def run(images, ids, catalog, p, params, timings):
        train_ids = set(catalog.loc[catalog["split"] == "train", "id"])  # codebook + idf fitted on these only
        return C.bovw_features(images, ids, train_ids, kind, seed=params["seed"], n_jobs=params["n_jobs"], **p)
    return run


def deep_method(name):
    def run(images, ids, catalog, p, params, timings):
        policy = deep.WeightsPolicy.from_params(params["pretrained"])
        return deep.extract(name, images, p, policy, n_jobs=params["n_jobs"], seed=params["seed"], timings=timings)
    return run


METHODS = {"classical": classical, "sift_bovw": bovw("sift"), "orb_bovw": bovw("orb"),
           **{m: deep_method(m) for m in deep.METHODS}}

if len(sys.argv) != 2 or sys.argv[1] not in METHODS:
    sys.exit(f"usage: python stages/image_features.py <method>, method in {sorted(METHODS)}")
method = sys.argv[1]
params = start_stage(f"image_features@{method}")
cv2.setNumThreads(1)  # images are spread over n_jobs threads; OpenCV's own pool (a thread per core) would add more
method_params = params["deep_features" if method in deep.METHODS else "image_features"][method]
images, ids, cache_meta = load_image_cache("data/interim/images.npz")
catalog = load_catalog("data/interim/catalog.parquet", features={"data/interim/images.npz": ids})

timings: dict = {}
with timed(method, timings, "seconds"):
    X, info = METHODS[method](images, ids, catalog, method_params, params, timings)
timings.setdefault("images_per_second", round(X.shape[0] / max(timings["seconds"], 1e-9), 1))

meta = {"extractor": method, "params": method_params, "seed": params["seed"], "weights": "none",
        "image_cache": {k: cache_meta.get(k) for k in ("size", "aspect", "jpeg_draft")}, **info}
io.save_features(f"data/features/image/{method}.npz", X, ids, meta)
metrics = {"dim": int(X.shape[1]), "n_images": int(X.shape[0]),
           **{k: v for k, v in info.items() if isinstance(v, (bool, int, float, str))}}
io.write_json(f"metrics/image_features/{method}.json", metrics)
write_timings("deep_features" if method in deep.METHODS else "image_features",  # the dvc.yaml stage name
              {"n_images": int(X.shape[0]), **timings}, method)
log.info("%s: X %s", method, X.shape)
