"""Stage catalog_image@<backbone>: a torch backbone of the image registry over every photo of the catalogue file
(`scale.catalog`: its `image` column, paths relative to the CSV's folder) -> data/catalog/features/
image_<backbone>.npz (rows in id order); the products whose photo is missing or unreadable are listed in
reports/catalog_image/<backbone>_failures.csv.

Photos are decoded and squared as prep_images does (prep_images.size / aspect / jpeg_draft,
data.max_image_pixels), then resized to the backbone's input_size. Real weights only (the weights record's
sha256 is checked by every worker). Runs in this process or on a Ray cluster (`scale.engine`); on a cluster the
photos must be readable at the same path from every node. Not in the default pipeline: `pipeline.catalog_image`.
"""
import _bootstrap  # noqa: F401

from pathlib import Path

from fkstudy.runtime import log, run_stage, stage_argument, start_stage
from fkstudy.scale import features
from fkstudy.scale.params import check_chunking


def main(argv=None) -> None:
    (method,) = stage_argument(argv, [features.image_methods()], "python stages/catalog_image.py <backbone>")
    stage = start_stage(f"catalog_image@{method}")
    params = stage.params
    p = getattr(params.deep_features, method)
    features.check_method(features.IMAGE, method, p)
    check_chunking(params.scale.chunk_rows, p.batch_size, f"deep_features.{method}.batch_size")
    weights = features.probe_weights(method, params.pretrained.dir)
    from fkstudy.image.torch_backbone import recorded_settings

    settings = {**recorded_settings(method, p.model_dump()), "sha256": weights["sha256"]}
    cache = {"size": params.prep_images.size, "aspect": params.prep_images.aspect,
             "jpeg_draft": params.prep_images.jpeg_draft}
    meta = {"extractor": method, "params": p.model_dump(), "weights": weights, "image_cache": cache,
            "input_size": p.input_size, "framework": "torch"}
    args = (method, settings, cache, p.input_size, params.data.max_image_pixels, str(Path(params.pretrained.dir).resolve()),
            params.n_jobs, p.batch_size)
    metrics = features.features_job(stage, "image", method, features.ImageWorker, args, meta, params.n_jobs)
    log.info("%s: %d of %d products encoded, %d failed (%d-d)", method, metrics["encoded"], metrics["rows"],
             metrics["failed"], metrics["dim"])


if __name__ == "__main__":
    run_stage(main)
