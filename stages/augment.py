"""Stage augment@<backbone>: `train.augment.views` augmented copies of every TRAIN photo, through the
frozen backbone once -> data/features/augmented/<backbone>.npz (ids "<product id>#<view>").

Only train photos are augmented: val and test keep their single, un-augmented feature row.
One process per backbone, like deep_features: TensorFlow (Keras backbones) or torch (Lite0).
"""
import _bootstrap  # noqa: F401
import sys
import time

import numpy as np

from fkstudy import io
from fkstudy.data.catalog import load_catalog
from fkstudy.image import augment, deep
from fkstudy.image.cache import load_image_cache
from fkstudy.runtime import log, start_stage, write_timings

BACKBONES = ("vgg16", "efficientnet_lite0", "efficientnetb0", "mobilenetv3small")
if len(sys.argv) != 2 or sys.argv[1] not in BACKBONES:
    sys.exit(f"usage: python stages/augment.py <backbone>, backbone in {list(BACKBONES)}")
backbone = sys.argv[1]
params = start_stage(f"augment@{backbone}")
a, seed = params["train"]["augment"], params["seed"]
cfg = augment.AugmentConfig(flip=a["flip"], rotation=a["rotation"], zoom=a["zoom"], brightness=a["brightness"])

images, ids, _ = load_image_cache("data/interim/images.npz")
catalog = load_catalog("data/interim/catalog.parquet")
train_ids = set(catalog.loc[catalog["split"] == "train", "id"])
rows = np.flatnonzero([i in train_ids for i in ids.tolist()])
if len(rows) == 0:
    sys.exit("augment: no train photos in data/interim/images.npz (check the catalog split)")

t0 = time.perf_counter()
views, source = augment.views(images[rows], a["views"], cfg, seed)
t1 = time.perf_counter()
policy = deep.WeightsPolicy.from_params(params["pretrained"])
X, rec = deep.extract(backbone, views, params["deep_features"][backbone], policy, n_jobs=params["n_jobs"], seed=seed)
t2 = time.perf_counter()

view_ids = [f"{ids[rows[s]]}#{k}" for s, k in zip(source, np.tile(np.arange(a["views"]), len(rows)))]
rec = {k: v for k, v in rec.items() if not k.endswith(("_seconds", "_per_second"))}
io.save_features(f"data/features/augmented/{backbone}.npz", X, view_ids,
                 {"backbone": backbone, "views_per_image": a["views"], "augment": a, "seed": seed,
                  "n_source_images": int(len(rows)), **rec})
write_timings("augment", {"augment_seconds": t1 - t0, "extract_seconds": t2 - t1,
                          "images_per_second": len(views) / max(t2 - t1, 1e-9), "n_views": len(views)}, backbone)
log.info("augment %s: %d train photos x %d views -> X %s (augment %.1fs, backbone %.1fs)", backbone, len(rows),
         a["views"], X.shape, t1 - t0, t2 - t1)
