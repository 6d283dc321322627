"""Stage train@<backbone>-<variant>: the Keras transfer-learning classifier (frozen backbone -> GAP ->
Dense(relu) -> Dropout -> softmax), its head trained on cached backbone features (+ augmented views).
Also stage fine_tune@<backbone> (stages/fine_tune.py calls `run` with variant finetuned): the head
of train@<backbone>-augmented, then the backbone's last `train.fine_tune.unfreeze_layers` layers (VGG16's
block5) and the head trained on cached activations of the frozen part, epoch after epoch on the train photos or
one fixed set of their augmented views in turn (the seed study's "augmented" model: augmentation plus block5).

Train on train, early-stop on val, report on test (fkstudy.train.transfer.train_classifier). Writes
models/train/<K>/ (head.keras, head.npz, classes.json and, for Keras backbones, the assembled
model.keras), metrics/train/<K>.json, plots/train/<K>/ and reports/timings/train/<K>.json; one MLflow run
with per-epoch metrics and the model with its signature. Runs TensorFlow only (torch backbones' features
were made by a torch process).
"""
import _bootstrap  # noqa: F401

import numpy as np

from fkstudy import files, paths, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.evaluate.metrics import confusion_table, rounded
from fkstudy.files import row_index
from fkstudy.image.cache import load_image_cache, resized
from fkstudy.image.deep import set_tf_threads
from fkstudy.image.registry import IMAGE, backbone_spec, backbones
from fkstudy.image.weights import WeightsPolicy
from fkstudy.plots import train as train_plots
from fkstudy.runtime import log, run_stage, stage_argument, start_stage
from fkstudy.train import transfer
from fkstudy.train.head_npz import save_head_npz


def main(argv=None) -> None:
    backbone, variant = stage_argument(argv, [backbones(), transfer.HEAD_VARIANTS],
                                       "python stages/train.py <backbone> <variant>")
    run(backbone, variant)


def run(backbone: str, variant: str, fine_tune=None) -> None:
    """One transfer-learning stage. `fine_tune` (stages/fine_tune.py, variant finetuned) replaces the head fit:
    fine_tune(d, cfg, seed, load_backbone=, preprocess=, images=, image_ids=, catalog=) -> TrainResult."""
    key = f"{backbone}_{variant}"
    stage = start_stage(f"fine_tune@{backbone}" if variant == "finetuned" else f"train@{backbone}-{variant}")
    params, cfg, seed = stage.params, stage.params.train, stage.params.seed
    feat_path = paths.features("image", backbone)
    X, ids, meta = files.load_features(feat_path)
    aug_X = aug_ids = None
    if variant in transfer.WITH_VIEWS:
        aug_X, aug_ids, aug_meta = files.load_features(paths.augmented(backbone))
        transfer.check_same_weights(meta, aug_meta, paths.augmented(backbone), f"re-run `dvc repro augment@{backbone}`")
    catalog = load_catalog(paths.CATALOG)
    d = transfer.prepare(X, ids, catalog, variant, aug_X, aug_ids)
    size = int(meta.get("input_size") or meta["image_cache"]["size"])  # the backbone's input side
    images, img_ids, _ = load_image_cache(paths.IMAGE_CACHE)
    if fine_tune is None:  # the photos are only shown (test predictions): resize those alone
        keep = row_index(img_ids, d.splits.ids_test, "image cache")
        images, img_ids = images[keep], img_ids[keep]
    images = resized(images, size)
    weights = meta.get("weights", "n/a")

    set_tf_threads(params.n_jobs)  # the head trains in TensorFlow for every backbone
    load_backbone = prep = None
    if IMAGE[backbone].framework == "keras":  # assembled with the head (and fine-tuned) in Keras
        spec = backbone_spec(backbone)
        prep = spec.function("preprocess")(backbone, meta.get("params", {}))

        def load_backbone():  # backbone weights checked against the features'
            base, rec = spec.function("load")(backbone, WeightsPolicy.from_params(params.pretrained), seed, size)
            transfer.check_same_weights(meta, rec, f"{backbone} weights ({rec.get('source')})",
                                        f"re-run `dvc repro deep_features@{backbone}`")
            return base

    if fine_tune is None:
        r = transfer.train_classifier(backbone, variant, d, cfg, seed, load_backbone=load_backbone)
    else:
        r = fine_tune(d, cfg, seed, load_backbone=load_backbone, preprocess=prep, images=images, image_ids=img_ids,
                      catalog=catalog)
    s, classes = d.splits, d.classes

    out_dir = paths.train_model(key)  # the head (Keras + framework-neutral npz) and backbone + head in one file
    files.save_keras(r.head, f"{out_dir}/head.keras")
    save_head_npz(f"{out_dir}/head.npz", r.head)
    files.write_json(f"{out_dir}/classes.json", classes)
    if r.full is not None:
        files.save_keras(r.full, f"{out_dir}/model.keras")

    info = dict(r.info)
    metrics = rounded({
        "backbone": backbone, "variant": variant, "weights": weights,
        "framework": "keras" if r.full is not None else "torch+keras",
        "backbone_params": int(meta.get("n_params", 0)), "head_params": int(r.head.count_params()),
        "n_train": int(len(s.y_train)), "n_train_views": int(info.pop("n_train_views", len(d.y_fit))),
        "n_val": int(len(s.y_val)),
        "n_test": int(len(s.y_test)), "test_accuracy": r.test["accuracy"], "test_loss": r.test["log_loss"],
        "macro_f1": r.test["macro_f1"], "micro_f1": r.test["micro_f1"], "weighted_f1": r.test["weighted_f1"],
        "ari": r.test["ari"], "val_accuracy": r.val["accuracy"], "val_loss": r.val["log_loss"],
        "unfreeze_layers": r.unfreeze, **info, "per_class": r.test["per_class"]})
    tags = {"backbone": backbone, "variant": variant, "weights": weights, "framework": metrics["framework"]}
    with tracking.run(params.mlflow.experiment, stage.name, f"train-{key}",
                      {**cfg.model_dump(), "backbone": backbone, "variant": variant, "seed": seed, "features": feat_path},
                      tags=tags):
        tracking.log_curve(r.history)
        tracking.log_metrics({k: v for k, v in metrics.items() if k != "per_class"}, "")
        tracking.log_metrics(r.test["per_class"], "per_class.")
        model = r.full if r.full is not None else r.head
        sample = np.zeros((1, *r.full.input_shape[1:]), np.float32) if r.full is not None else s.X_test[:2]
        tracking.log_keras_model(model, sample, name="model")

    files.write_json(paths.metrics("train", key), metrics)
    stage.timings.update(r.timings)
    stage.write_timings("train", key, seconds_per_epoch=r.timings["fit_seconds"] / max(r.info["epochs_run"], 1),
                        fit_rows=int(len(d.y_fit)))
    out = paths.plots("train", key)
    files.write_csv(f"{out}/history.csv", r.history.round(5))
    table = confusion_table(s.ids_test, s.y_test, r.pred)
    files.write_csv(f"{out}/confusion.csv", table)
    label = f"{backbone} {variant} ({weights})"
    files.save_figure(train_plots.history(r.history, f"{label}: training history", r.info["best_epoch"]),
                      f"{out}/history.png")
    files.save_figure(train_plots.confusion_matrix(table, f"{label}: test confusion", classes), f"{out}/confusion.png")
    files.save_figure(train_plots.per_class_f1(r.test["per_class"], f"{label}: per-class F1 (test)"),
                      f"{out}/per_class_f1.png")
    pick = r.examples(6, seed)
    files.save_figure(train_plots.prediction_examples(
        images[row_index(img_ids, s.ids_test[pick])], s.y_test[pick], r.pred[pick], r.proba.max(1)[pick],
        f"{label}: most confident correct (green) and incorrect (red) test predictions"), f"{out}/predictions.png")
    log.info("%s: test accuracy %.4f, macro-F1 %.4f (val %.4f), best epoch %d/%d, fit %.1fs", key,
             metrics["test_accuracy"], metrics["macro_f1"], metrics["val_accuracy"], r.info["best_epoch"],
             r.info["epochs_run"], r.timings["fit_seconds"])


if __name__ == "__main__":
    run_stage(main)
