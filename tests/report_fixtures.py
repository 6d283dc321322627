"""A generated study for the report tests: metrics/, reports/timings/ and plots/ as the pipeline writes them
(train, multiseed, gradcam and zero_shot files in the layout the supervised stages write).

Numbers are chosen so the expected report is known: text_bert meets its ARI target, text_tfidf does not,
mobilenetv3small_base and image_clip are random-init, vgg16_augmented has no timings file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fkstudy.evaluate.metrics import class_key

CLASSES = ["Baby Care", "Beauty and Personal Care", "Computers", "Home Decor & Festive Needs", "Home Furnishing",
           "Kitchen & Dining", "Watches"]
CLUSTER = {  # set: (ari, weights)
    "text_bow": (0.58, "fitted on train"), "text_tfidf": (0.60, "fitted on train"),
    "text_bert": (0.70, "pretrained"), "image_vgg16": (0.50, "imagenet"), "image_classical": (0.07, "none"),
    "image_clip": (0.03, "random-init"),
}
TRAIN = {  # K: (test_accuracy, weights, backbone_params)
    "vgg16_base": (0.86, "imagenet", 14_714_688), "vgg16_augmented": (0.88, "imagenet", 14_714_688),
    "mobilenetv3small_base": (0.31, "random-init", 939_120),
}
TEXT_CLF = {"bow": 0.90, "bert": 0.95}


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True))


def _per_class(base: float) -> dict:
    return {c: {"precision": round(base - 0.01 * i, 4), "recall": round(base, 4), "f1": round(base - 0.005 * i, 4),
                "support": 30} for i, c in enumerate(CLASSES)}


def _png(path: Path, seed: int, size=(360, 220)) -> None:
    """A small chart-like PNG: coloured bars on white with a label (never blank)."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGBA", size, "white")
    d = ImageDraw.Draw(im)
    for i in range(7):
        h = int(rng.integers(30, size[1] - 30))
        colour = tuple(int(v) for v in rng.integers(30, 220, 3))
        d.rectangle([20 + i * 45, size[1] - h, 50 + i * 45, size[1] - 10], fill=colour)
    d.text((10, 8), path.stem, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


PLOTS = ["ingest/class_balance.png", "ingest/category_tree.png", "ingest/spec_top_values.png",
         "prep_images/dashboard.png", "prep_images/samples.png",
         "text_features/bow_top_terms.png", "text_features/bow_wordclouds.png",
         "text_features/tfidf_top_terms.png", "text_features/tfidf_wordclouds.png",
         *[f"cluster/{s}/{n}.png" for s in CLUSTER for n in ("scatter", "contingency", "centroid_distances")],
         "report/ari_comparison.png", "report/backbones.png",
         *[f"text_classifier/{s}/{n}.png" for s in TEXT_CLF for n in ("confusion", "per_class_f1")],
         *[f"train/{k}/{n}.png" for k in TRAIN for n in ("history", "confusion", "per_class_f1", "predictions")],
         "gradcam/correct.png", "gradcam/incorrect.png",
         "multiseed/vgg16/learning_curves.png", "multiseed/vgg16/per_class_f1.png",
         "fusion/per_class_f1.png", "fusion/fusion_confusion.png"]


def make_study(root: Path, optional: bool = True) -> Path:
    """Write the generated study under `root`; optional=False leaves out train, multiseed, gradcam,
    zero_shot and every timings file (stages that may not have run)."""
    root = Path(root)
    m, t = root / "metrics", root / "reports/timings"
    _json(m / "ingest.json", {"rows_read": 1050, "products": 1050, "quarantined": 0, "categories": 7, "images_ok": 1047,
                              "problems_by_kind": {"image_missing": 3}, "per_class": {c: 150 for c in CLASSES},
                              "per_split": {"train": 630, "val": 210, "test": 210}})
    field = {"words_before": 1000, "words_after": 600, "reduction_pct": 40.0, "avg_words_before": 9.5,
             "avg_words_after": 5.7, "vocab_before": 500, "vocab_lemmas": 420, "vocab_stems": 400}
    _json(m / "clean_text.json", {"name": field, "description": field, "seconds": 1.0})
    _json(m / "prep_images.json", {"processed": 1047, "failed": 0, "skipped_at_ingest": 3, "near_blank": 2,
                                   "converted_to_rgb": 0, "exif_rotated": 0, "blur_median": 1288.0,
                                   "contrast_median": 67.9, "brightness_median": 180.4})
    for name, (ari, weights) in CLUSTER.items():
        modality, method = name.split("_", 1)
        folder = "text_features" if modality == "text" else "image_features"
        _json(m / folder / f"{method}.json", {"dim": 64, "n": 1050, "weights": weights})
        red = {h: {"ari_mean": ari - d, "ari_std": 0.01, "nmi_mean": ari + 0.1, "matched_accuracy_mean": ari + 0.2,
                   "silhouette_clusters_mean": 0.4, "silhouette_true_mean": 0.2, "n_seeds": 3}
               for h, d in (("none", 0.10), ("pca", 0.12), ("tsne", 0.0))}
        _json(m / "cluster" / f"{name}.json", {"set": name, "n": 1050, "dim": 64, "weights": weights,
                                               "primary_reduction": "tsne", "ari": ari, "ari_std": 0.01,
                                               "silhouette": 0.5, "best_reduction": "tsne", "best_ari": ari, **red})
    for name, f1 in TEXT_CLF.items():
        _json(m / "text_classifier" / f"{name}.json", {
            "set": name, "head": "logreg", "C": 1.0, "test_accuracy": f1, "macro_f1": f1, "weighted_f1": f1,
            "micro_f1": f1, "ari": f1 - 0.1, "cv_macro_f1": f1 - 0.01, "cv_macro_f1_std": 0.01, "dim": 64,
            "per_class": _per_class(f1)})
    _json(m / "fusion.json", {
        "text_set": "bert", "image_set": "vgg16", "image_weights": "imagenet", "head": "logreg", "n_train": 628,
        "n_val": 209, "n_test": 210, "text_test_accuracy": 0.95, "text_macro_f1": 0.95, "image_test_accuracy": 0.84,
        "image_macro_f1": 0.84, "best_single_test_accuracy": 0.95, "average_proba_test_accuracy": 0.96,
        "average_proba_macro_f1": 0.96, "average_proba_ari": 0.9, "average_proba_minus_best_single": 0.01,
        "average_proba_per_class": _per_class(0.96), "concat_test_accuracy": 0.94, "concat_macro_f1": 0.94,
        "concat_ari": 0.88, "concat_minus_best_single": -0.01, "select_by": "cv",
        "fusion_selected": "average_proba@0.6", "fusion_test_accuracy": 0.96, "fusion_macro_f1": 0.96,
        "fusion_ari": 0.9, "fusion_minus_best_single": 0.01,
        "fusion_per_class": {class_key(c): v for c, v in _per_class(0.96).items()},
        "cv": {k: {"cv_accuracy": 0.9, "cv_accuracy_std": 0.02}
               for k in ("text", "image", "concat", "average_proba", "fusion")}})
    if optional:
        for k, (acc, weights, bp) in TRAIN.items():
            backbone, variant = k.rsplit("_", 1)
            _json(m / "train" / f"{k}.json", {
                "backbone": backbone, "variant": variant, "weights": weights, "framework": "keras",
                "backbone_params": bp, "head_params": 532_487, "n_train": 628, "n_train_views": 1256, "n_val": 209,
                "n_test": 210, "test_accuracy": acc, "test_loss": 0.5, "macro_f1": acc - 0.01, "micro_f1": acc,
                "weighted_f1": acc - 0.01, "ari": acc - 0.2, "val_accuracy": acc, "best_epoch": 4, "epochs_run": 7,
                "per_class": _per_class(acc)})
        _json(t / "train/vgg16_base.json", {"fit_seconds": 123.4, "seconds_per_epoch": 17.6})
        _json(t / "train/mobilenetv3small_base.json", {"fit_seconds": 20.0, "seconds_per_epoch": 2.9})
        _json(t / "text_features/bert.json", {"seconds": 43.2})
        _json(m / "multiseed/vgg16.json", {
            "features": "vgg16", "weights": "imagenet", "head": "mlp", "n_seeds": 5, "n_train": 628, "n_val": 209,
            "n_test": 210, "test_accuracy": 0.836, "test_accuracy_std": 0.003, "test_accuracy_ci95_low": 0.832,
            "test_accuracy_ci95_high": 0.840, "macro_f1": 0.835, "macro_f1_std": 0.003, "macro_f1_ci95_low": 0.831,
            "macro_f1_ci95_high": 0.839, "val_accuracy": 0.82})
        _json(m / "gradcam.json", {"model": "vgg16_augmented", "backbone": "vgg16", "variant": "augmented",
                                   "layer": "block5_conv3", "n_correct": 3, "n_incorrect": 3,
                                   "selection": "first 3 of each, test order"})
        _json(m / "zero_shot.json", {"available": False, "weights": "random-init", "arch": "ViT-B-32", "tag": "openai",
                                     "prompt_template": "a photo of a {}, a product sold online",
                                     "reason": "no CLIP weights obtainable offline"})
    for i, rel in enumerate(PLOTS):
        _png(root / "plots" / rel, seed=i)
    return root
