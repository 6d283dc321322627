"""Stage zero_shot: CLIP zero-shot over the category names on the test photos.

Only meaningful with real CLIP weights: this stage never falls back to random weights. Without
them (none in `pretrained.dir`, the open_clip cache, or a download) it records
`"available": false` with the reason — not a number. Runs torch only.
"""
import _bootstrap  # noqa: F401
import dataclasses

from fkstudy import files, paths
from fkstudy.data.catalog import load_catalog
from fkstudy.evaluate import zero_shot
from fkstudy.evaluate.metrics import rounded, scores
from fkstudy.files import row_index
from fkstudy.image import torch_models
from fkstudy.image.cache import load_image_cache
from fkstudy.image.weights import MissingWeightsError, WeightsPolicy
from fkstudy.runtime import log, run_stage, start_stage


def main() -> None:
    stage = start_stage("zero_shot")
    params, p, clip = stage.params, stage.params.zero_shot, stage.params.deep_features.clip
    policy = dataclasses.replace(WeightsPolicy.from_params(params.pretrained), allow_random_init=False)
    catalog = load_catalog(paths.CATALOG)
    classes = sorted(catalog["category"].unique())
    metrics = {"arch": clip.arch, "tag": clip.tag, "prompt_template": p.prompt_template}
    try:
        model, rec = torch_models.load_clip(clip.arch, clip.tag, policy, params.seed)
    except MissingWeightsError as exc:
        metrics.update(available=False, weights="missing",
                       reason="no real CLIP weights: random weights would make zero-shot meaningless "
                              f"(expected {exc.expected})")
        log.warning("zero_shot unavailable: %s", exc)
    else:
        images, ids, _ = load_image_cache(paths.IMAGE_CACHE)
        test = catalog[(catalog["split"] == "test") & catalog["id"].isin(set(ids.tolist()))]
        with stage.timed("zero_shot", "seconds"):
            img = torch_models.extract_clip(images[row_index(ids, test["id"])], batch_size=p.batch_size,
                                            arch=clip.arch, tag=clip.tag, policy=policy, n_jobs=params.n_jobs,
                                            seed=params.seed)[0]
            txt, _ = torch_models.clip_text_features(zero_shot.prompts(classes, p.prompt_template), model=model,
                                                     n_jobs=params.n_jobs)
            proba = zero_shot.zero_shot_proba(img, txt)
        m = scores(test["category"].to_numpy(), proba, classes, classes)
        metrics.update(available=True, weights=rec["weights"], sha256=rec["sha256"], n_test=m["n"],
                       accuracy=m["accuracy"], macro_f1=m["macro_f1"], ari=m["ari"], per_class=m["per_class"])
        metrics = rounded(metrics)
    files.write_json(paths.metrics("zero_shot"), metrics)
    stage.write_timings("zero_shot")
    log.info("zero_shot: %s", "accuracy %.4f" % metrics["accuracy"] if metrics["available"] else "unavailable")


if __name__ == "__main__":
    run_stage(main)
