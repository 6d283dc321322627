"""Stage augment@<backbone>: `train.augment.views` augmented copies of every TRAIN photo, through the
frozen backbone once -> data/features/augmented_<backbone>.npz (ids "<product id>#<view>").

Only train photos are augmented: val and test keep their single, un-augmented feature row.
One process per backbone, like deep_features: TensorFlow (Keras backbones) or torch.
"""
import _bootstrap  # noqa: F401

from fkstudy import files, paths
from fkstudy.data.catalog import load_catalog
from fkstudy.data.splits import split_ids
from fkstudy.image import augment
from fkstudy.image.cache import load_image_cache, resized
from fkstudy.image.deep import extract
from fkstudy.image.registry import backbones
from fkstudy.image.weights import WeightsPolicy
from fkstudy.registry import Context
from fkstudy.runtime import log, run_stage, stage_argument, start_stage


def main(argv=None) -> None:
    (backbone,) = stage_argument(argv, [backbones()], "python stages/augment.py <backbone>")
    stage = start_stage(f"augment@{backbone}")
    params, seed = stage.params, stage.params.seed
    a = params.train.augment
    method_params = getattr(params.deep_features, backbone)
    images, ids, _ = load_image_cache(paths.IMAGE_CACHE)
    images = resized(images, method_params.input_size)
    catalog = load_catalog(paths.CATALOG)
    train_ids = split_ids(catalog, "train")
    with stage.timed("augment", "augment_seconds"):
        views, view_ids = augment.train_views(images, ids, train_ids, a, seed)
    ctx = Context(ids=view_ids, fit_ids=None, seed=seed, n_jobs=params.n_jobs,
                  weights=WeightsPolicy.from_params(params.pretrained), timings={})
    with stage.timed(backbone, "extract_seconds"):
        X, rec = extract(backbone, views, method_params, ctx)
    files.save_features(paths.augmented(backbone), X, view_ids,
                        {"backbone": backbone, "views_per_image": a.views, "augment": a.model_dump(), "seed": seed,
                         "input_size": method_params.input_size,
                         "n_source_images": int(len(views) // a.views), **rec}, **ctx.arrays)
    stage.write_timings("augment", backbone, n_views=len(views),
                        images_per_second=len(views) / max(stage.timings["extract_seconds"], 1e-9))
    log.info("augment %s: %d train photos x %d views -> X %s", backbone, len(views) // a.views, a.views, X.shape)


if __name__ == "__main__":
    run_stage(main)
