"""Stage zero_shot: CLIP zero-shot over the category names on the test photos.

Only meaningful with real CLIP weights: this stage never falls back to random weights. Without
them (none in `pretrained.dir`, the open_clip cache, or a download) it records
`"available": false` with the reason — not a number. Runs torch only.
"""
import _bootstrap  # noqa: F401
import dataclasses

import numpy as np

from fkstudy import io
from fkstudy.data.catalog import load_catalog
from fkstudy.evaluate import zero_shot as Z
from fkstudy.image import deep
from fkstudy.image.cache import load_image_cache
from fkstudy.image.weights import MissingWeightsError
from fkstudy.runtime import log, start_stage, write_timings, timed
from fkstudy.train import heads

params = start_stage("zero_shot")
p, clip = params["zero_shot"], params["deep_features"]["clip"]
policy = dataclasses.replace(deep.WeightsPolicy.from_params(params["pretrained"]), allow_random_init=False)
catalog = load_catalog("data/interim/catalog.parquet")
classes = sorted(catalog["category"].unique())
metrics = {"arch": clip["arch"], "tag": clip["tag"], "prompt_template": p["prompt_template"]}
timing: dict = {}
try:
    model, rec = deep.load_clip(clip["arch"], clip["tag"], policy, params["seed"])
except MissingWeightsError as exc:
    metrics.update(available=False, weights="missing",
                   reason=f"no real CLIP weights (random weights would make zero-shot meaningless): {exc}")
    log.warning("zero_shot unavailable: %s", exc)
else:
    images, ids, _ = load_image_cache("data/interim/images.npz")
    test = catalog[(catalog["split"] == "test") & catalog["id"].isin(set(ids.tolist()))]
    row = {k: i for i, k in enumerate(ids.tolist())}
    with timed("zero_shot", timing, "seconds"):
        img = deep.extract_clip(images[[row[i] for i in test["id"]]], batch_size=p["batch_size"], arch=clip["arch"],
                                tag=clip["tag"], policy=policy, n_jobs=params["n_jobs"], seed=params["seed"])[0]
        txt, _ = deep.clip_text_features(Z.prompts(classes, p["prompt_template"]), model=model,
                                         n_jobs=params["n_jobs"])
        proba = Z.zero_shot_proba(img, txt)
    m = heads.metrics_from_proba(test["category"].to_numpy(), proba, classes, classes)
    metrics.update(available=True, weights=rec["weights"], sha256=rec["sha256"], n_test=m["n"],
                   accuracy=m["accuracy"], macro_f1=m["macro_f1"], ari=m["ari"], per_class=m["per_class"])
    metrics = heads.rounded(metrics)
io.write_json("metrics/zero_shot.json", metrics)
write_timings("zero_shot", timing)
log.info("zero_shot: %s", "accuracy %.4f" % metrics["accuracy"] if metrics["available"] else "unavailable")
