"""Stage prep_images: decode, resize and quality-check every usable photo -> image cache + report."""
import _bootstrap  # noqa: F401
import os
from pathlib import Path

import cv2

from fkstudy import io
from fkstudy.data.catalog import load_catalog
from fkstudy.image.cache import save_image_cache
from fkstudy.image.preprocess import build_image_cache, prep_metrics, require_images
from fkstudy.plots import images as iplots
from fkstudy.runtime import log, start_stage, timed, write_timings

CACHE = "data/interim/images.npz"

params = start_stage("prep_images")
cv2.setNumThreads(1)  # photos are spread over n_jobs threads; OpenCV's own pool (a thread per core) would add more
dp, pp = params["data"], params["prep_images"]
catalog = load_catalog("data/interim/catalog.parquet")
timing: dict = {}
with timed("decode + resize", timing, "seconds"):
    images, ids, quality, failures = build_image_cache(
        catalog, Path(dp["raw_dir"]) / dp["image_dir"], size=pp["size"], aspect=pp["aspect"],
        max_pixels=dp["max_image_pixels"], blank_threshold=pp["blank_threshold"], n_jobs=params["n_jobs"],
        jpeg_draft=pp["jpeg_draft"])
io.write_csv("reports/prep_images_failures.csv", failures)
require_images(ids, failures)

meta = {"stage": "prep_images", "size": pp["size"], "aspect": pp["aspect"], "jpeg_draft": pp["jpeg_draft"],
        "max_image_pixels": dp["max_image_pixels"], "blank_threshold": pp["blank_threshold"],
        "n_images": len(ids), "layout": "RGB uint8 [n, size, size, 3], ids sorted"}
save_image_cache(CACHE, images, ids, meta)
io.write_parquet("data/interim/image_quality.parquet", quality)
io.write_csv("plots/prep_images/quality.csv", quality.drop(columns=["mode", "format"]))
io.write_json("metrics/prep_images.json", prep_metrics(catalog, quality, failures, os.path.getsize(CACHE)))
attempted = len(ids) + len(failures)
write_timings("prep_images", {"images": attempted, **timing,
                              "images_per_second": round(attempted / max(timing["seconds"], 1e-9), 1)})
io.save_figure(iplots.processing_dashboard(quality, failures, pp["blank_threshold"]),
               "plots/prep_images/dashboard.png")
io.save_figure(iplots.sample_grid(images, ids, catalog.set_index("id")["category"], pp["samples_per_category"],
                                  seed=params["seed"]), "plots/prep_images/samples.png", dpi=80)
log.info("%d images cached in %s, %d failed (reports/prep_images_failures.csv)", len(ids), CACHE, len(failures))
