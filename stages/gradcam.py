"""Stage gradcam: Grad-CAM overlays for the best trained image classifier on its test photos: the most
confident correct and the most confident incorrect predictions (fkstudy.train.explain picks the run:
real weights, highest val accuracy)."""
import _bootstrap  # noqa: F401
import json

import numpy as np

from fkstudy import files, paths
from fkstudy.data.catalog import load_catalog
from fkstudy.errors import StudyError
from fkstudy.files import row_index
from fkstudy.image.cache import load_image_cache, resized
from fkstudy.image.weights import WeightsPolicy
from fkstudy.plots import gradcam as gradcam_plots
from fkstudy.runtime import log, run_stage, start_stage
from fkstudy.train import explain, gradcam


def main() -> None:
    stage = start_stage("gradcam")
    params, p, seed = stage.params, stage.params.gradcam, stage.params.seed
    best = explain.best_run(paths.metrics_dir("train"))
    backbone, variant = best["backbone"], best["variant"]
    key = f"{backbone}_{variant}"
    model_dir = paths.train_model(key)
    classes = json.loads(open(f"{model_dir}/classes.json", encoding="utf-8").read())

    images, ids, _ = load_image_cache(paths.IMAGE_CACHE)
    catalog = load_catalog(paths.CATALOG)
    test = catalog[(catalog["split"] == "test") & catalog["id"].isin(set(ids.tolist()))]
    settings = getattr(params.deep_features, backbone)   # the backbone's section: input side and preprocess settings
    test_images = resized(images[row_index(ids, test["id"])], settings.input_size)
    y_true = np.array([classes.index(c) for c in test["category"]])

    model = explain.explain(model_dir, backbone, test_images, settings.model_dump(),
                            WeightsPolicy.from_params(params.pretrained), seed, params.n_jobs)
    y_pred = model.proba.argmax(1)
    accuracy = float((y_pred == y_true).mean())
    if abs(accuracy - best["test_accuracy"]) > 0.02:  # the reloaded model must be the one that was evaluated
        raise StudyError(f"gradcam: reloaded {key} scores {accuracy:.4f} on test, train reported "
                         f"{best['test_accuracy']:.4f}: re-run `dvc repro train@{backbone}-{variant}`")
    correct, incorrect = gradcam.select_examples(y_true, y_pred, model.proba, p.n_examples, seed)
    for name, idx in (("correct", correct), ("incorrect", incorrect)):
        heat = model.maps(idx) if len(idx) else np.zeros((0, *test_images.shape[1:3]), np.float32)
        overlays = (np.stack([gradcam_plots.overlay(test_images[i], h, p.alpha) for i, h in zip(idx, heat)])
                    if len(idx) else np.zeros((0, *test_images.shape[1:]), np.uint8))
        titles = [gradcam_plots.example_title(classes[y_true[i]], classes[y_pred[i]], model.proba[i, y_pred[i]])
                  for i in idx]
        files.save_figure(gradcam_plots.gradcam_grid(test_images[idx], overlays, titles, ncols=3,
                                                     title=f"Grad-CAM {key} ({name} test predictions, most confident "
                                                     "first)"), paths.plots("gradcam", f"{name}.png"))
    files.write_json(paths.metrics("gradcam"), {
        "model": key, "backbone": backbone, "variant": variant, "weights": best["weights"], "layer": model.layer,
        "n_correct": int(len(correct)), "n_incorrect": int(len(incorrect)), "test_accuracy": round(accuracy, 4),
        "selection": "highest val accuracy among real-weights train runs"})
    log.info("gradcam %s (%s): %d correct, %d incorrect examples", key, model.layer, len(correct), len(incorrect))


if __name__ == "__main__":
    run_stage(main)
