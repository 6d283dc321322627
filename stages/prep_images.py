"""Stage prep_images: decode, resize and quality-check every usable photo -> image cache + report."""
import _bootstrap  # noqa: F401
import os
from pathlib import Path

from fkstudy import files, paths
from fkstudy.data.catalog import load_catalog
from fkstudy.image.cache import save_image_cache
from fkstudy.image.preprocess import build_image_cache, prep_metrics, require_images
from fkstudy.plots import images as image_plots
from fkstudy.runtime import log, run_stage, start_stage


def main() -> None:
    import cv2

    stage = start_stage("prep_images")
    cv2.setNumThreads(1)  # photos are spread over n_jobs threads; OpenCV's own pool (a thread per core) would add more
    dp, pp = stage.params.data, stage.params.prep_images
    catalog = load_catalog(paths.CATALOG)
    with stage.timed("decode + resize", "seconds"):
        images, ids, quality, failures = build_image_cache(
            catalog, Path(dp.raw_dir) / dp.image_dir, size=pp.size, aspect=pp.aspect,
            max_pixels=dp.max_image_pixels, blank_threshold=pp.blank_threshold, n_jobs=stage.params.n_jobs,
            jpeg_draft=pp.jpeg_draft)
    files.write_csv(paths.PREP_FAILURES, failures)
    require_images(ids, failures)

    meta = {"stage": "prep_images", "size": pp.size, "aspect": pp.aspect, "jpeg_draft": pp.jpeg_draft,
            "max_image_pixels": dp.max_image_pixels, "blank_threshold": pp.blank_threshold,
            "n_images": len(ids), "layout": "RGB uint8 [n, size, size, 3], ids sorted"}
    save_image_cache(paths.IMAGE_CACHE, images, ids, meta)
    files.write_parquet(paths.IMAGE_QUALITY, quality)
    files.write_csv(paths.plots("prep_images", "quality.csv"), quality.drop(columns=["mode", "format"]))
    files.write_json(paths.metrics("prep_images"),
                     prep_metrics(catalog, quality, failures, os.path.getsize(paths.IMAGE_CACHE)))
    attempted = len(ids) + len(failures)
    stage.write_timings("prep_images", images=attempted,
                        images_per_second=round(attempted / max(stage.timings["seconds"], 1e-9), 1))
    files.save_figure(image_plots.processing_dashboard(quality, failures, pp.blank_threshold),
                      paths.plots("prep_images", "dashboard.png"))
    files.save_figure(image_plots.sample_grid(images, ids, catalog.set_index("id")["category"], pp.samples_per_category,
                                              seed=stage.params.seed), paths.plots("prep_images", "samples.png"), dpi=80)
    log.info("%d images cached in %s, %d failed (%s)", len(ids), paths.IMAGE_CACHE, len(failures), paths.PREP_FAILURES)


if __name__ == "__main__":
    run_stage(main)
