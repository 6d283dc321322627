"""A generated study for the report tests: metrics/ and plots/ as the pipeline writes them (train, multiseed,
gradcam, zero_shot, register and label_audit files in the layout their stages write, the test predictions CSVs
of fusion, text_classifier and train); `write_timings` adds the wall-clock records the stages leave in
reports/timings/ (which the report must never read).

Numbers are chosen so the expected report is known: text_bert (0.70) misses the BERT-family ARI target 0.75,
text_tfidf misses its 0.65, mobilenetv3small_base and image_clip are random-init. Measured targets: 11, met: 4 (image-only 0.88, fusion 0.96, calibration ECE 0.024 <= 0.03,
accuracy at 80 % coverage 0.993). Every predictions CSV reproduces its recorded test accuracy (the text
classifiers' their macro-F1 too); the fusion's 7 mistakes on 175 products put Baby Care <-> Home Furnishing
first (3 + 1).
"""
from __future__ import annotations

import csv
import json
from fractions import Fraction
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
         "fusion/per_class_f1.png", "fusion/fusion_confusion.png", "fusion/calibration.png",
         "label_audit/examples.png"]

# The selected fusion's test mistakes (actual, predicted, how many): 7 of 175 -> accuracy 0.96
FUSION_MISTAKES = [("Baby Care", "Home Furnishing", 3), ("Home Furnishing", "Baby Care", 1),
                   ("Home Decor & Festive Needs", "Home Furnishing", 2),
                   ("Kitchen & Dining", "Home Decor & Festive Needs", 1)]
FUSION_PER_CLASS = 25
CALIBRATION = {  # metrics/fusion.json calibration.<role>
    "selected": {"temperature": 1.35, "target_accuracy": 0.99, "threshold": 0.82, "oof_coverage_at_threshold": 0.78,
                 "oof_ece": 0.021, "test_ece_uncalibrated": 0.061, "test_ece": 0.024,
                 "test_coverage_at_threshold": 0.8, "test_accuracy_at_threshold": 0.994, "test_accuracy_at_50": 1.0,
                 "test_accuracy_at_60": 1.0, "test_accuracy_at_70": 1.0, "test_accuracy_at_80": 0.993,
                 "test_accuracy_at_90": 0.984, "test_accuracy_at_100": 0.96,
                 **{f"test_threshold_at_{c}": round(1 - c / 200, 3) for c in (50, 60, 70, 80, 90, 100)}},
    "text": {"temperature": 1.6, "target_accuracy": 0.99, "threshold": 0.9, "oof_coverage_at_threshold": 0.6,
             "oof_ece": 0.03, "test_ece_uncalibrated": 0.08, "test_ece": 0.041, "test_coverage_at_threshold": 0.62,
             "test_accuracy_at_threshold": 0.991, "test_accuracy_at_50": 1.0, "test_accuracy_at_60": 0.99,
             "test_accuracy_at_70": 0.98, "test_accuracy_at_80": 0.975, "test_accuracy_at_90": 0.96,
             "test_accuracy_at_100": 0.95,
             **{f"test_threshold_at_{c}": round(1 - c / 150, 3) for c in (50, 60, 70, 80, 90, 100)}},
}
# Suspected label errors (id, split, name, given, suggested, probability): 3 in test, 2 of them fusion mistakes
LABEL_ISSUES = [("f_0_0", "test", "Cotton Baby Bedsheet Set", "Baby Care", "Home Furnishing", 0.91),
                ("t_0", "train", "Printed Cushion Cover", "Baby Care", "Home Furnishing", 0.88),
                ("f_4_0", "test", "Kids Printed Quilt", "Home Furnishing", "Baby Care", 0.84),
                ("v_0", "val", "Ceramic Showpiece", "Kitchen & Dining", "Home Decor & Festive Needs", 0.8),
                ("f_6_5", "test", "Sonata Analog Watch - For Men", "Watches", "Baby Care", 0.55)]


def _predictions(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "actual", "predicted"])
        w.writerows(rows)


def cycle_predictions(accuracy: float, prefix: str) -> list[tuple[str, str, str]]:
    """Test predictions with exactly `accuracy` and macro-F1 = accuracy: n products per class, the first e of
    each predicted as the next class (so every class has precision = recall)."""
    frac = Fraction(accuracy).limit_denominator(100)
    n, e = frac.denominator, frac.denominator - frac.numerator
    return [(f"{prefix}_{i}_{j}", c, CLASSES[(i + 1) % len(CLASSES)] if j < e else c)
            for i, c in enumerate(CLASSES) for j in range(n)]


def fusion_predictions() -> list[tuple[str, str, str]]:
    """FUSION_PER_CLASS test products per class (ids f_<class>_<j>), the first ones of a class its
    FUSION_MISTAKES."""
    rows = []
    for i, c in enumerate(CLASSES):
        preds = [p for a, p, k in FUSION_MISTAKES if a == c for _ in range(k)]
        rows += [(f"f_{i}_{j}", c, preds[j] if j < len(preds) else c) for j in range(FUSION_PER_CLASS)]
    return rows


def label_audit(root: Path) -> None:
    """metrics/label_audit.json, reports/label_issues.csv and plots/label_audit/pairs.csv for LABEL_ISSUES,
    the test accuracies computed from fusion_predictions() as the stage does."""
    fields = ["rank", "id", "split", "name", "given", "suggested", "suggested_probability", "given_probability",
              "label_quality"]
    path = root / "reports/label_issues.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(fields)
        w.writerows([r, i, sp, n, g, s, q, round((1 - q) / 3, 4), round((1 - q) / 3, 4)]
                    for r, (i, sp, n, g, s, q) in enumerate(LABEL_ISSUES, 1))
    pairs: dict[tuple[str, str], int] = {}
    for _, _, _, g, s, _ in LABEL_ISSUES:
        pairs[(g, s)] = pairs.get((g, s), 0) + 1
    path = root / "plots/label_audit/pairs.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["given", "suggested", "products"])
        w.writerows((g, s, n) for (g, s), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])))
    preds = fusion_predictions()
    flagged = {i for i, *_ in LABEL_ISSUES}
    ok = [a == p for _, a, p in preds]
    keep = [i not in flagged for i, _, _ in preds]
    by_split = {sp: sum(1 for _, s2, *_ in LABEL_ISSUES if s2 == sp) for sp in ("train", "val", "test")}
    _json(root / "metrics/label_audit.json", {
        "text_set": "bert", "image_set": "vgg16", "n_products": 1050, "n_flagged": len(LABEL_ISSUES),
        "flagged_fraction": round(len(LABEL_ISSUES) / 1050, 4), **{f"flagged_{k}": v for k, v in by_split.items()},
        "out_of_fold_accuracy": 0.93, "fusion_test_accuracy": round(sum(ok) / len(ok), 4),
        "fusion_test_accuracy_unflagged": round(sum(o for o, k in zip(ok, keep) if k) / sum(keep), 4),
        "fusion_test_errors": ok.count(False), "fusion_test_errors_flagged": sum(1 for o, k in zip(ok, keep)
                                                                                 if not o and not k),
        "examples": 12})


def make_study(root: Path, optional: bool = True) -> Path:
    """Write the generated study under `root`; optional=False leaves out train, multiseed, gradcam,
    zero_shot, register and label_audit (stages that may not have run)."""
    root = Path(root)
    m = root / "metrics"
    _json(m / "ingest.json", {"rows_read": 1050, "products": 1050, "quarantined": 0, "categories": 7, "images_ok": 1047,
                              "problems_by_kind": {"image_missing": 3}, "per_class": {c: 150 for c in CLASSES},
                              "per_split": {"train": 630, "val": 210, "test": 210}})
    field = {"words_before": 1000, "words_after": 600, "reduction_pct": 40.0, "avg_words_before": 9.5,
             "avg_words_after": 5.7, "vocab_before": 500, "vocab_lemmas": 420, "vocab_stems": 400}
    _json(m / "clean_text.json", {"name": field, "description": field})
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
        "n_val": 209, "n_test": 175, "text_test_accuracy": 0.95, "text_macro_f1": 0.95, "image_test_accuracy": 0.84,
        "image_macro_f1": 0.84, "best_single_test_accuracy": 0.95, "average_proba_test_accuracy": 0.96,
        "average_proba_macro_f1": 0.96, "average_proba_ari": 0.9, "average_proba_minus_best_single": 0.01,
        "average_proba_per_class": _per_class(0.96), "concat_test_accuracy": 0.94, "concat_macro_f1": 0.94,
        "concat_ari": 0.88, "concat_minus_best_single": -0.01, "select_by": "cv",
        "fusion_selected": "average_proba@0.6", "fusion_mode": "average_proba", "fusion_text_weight": 0.6,
        "fusion_test_accuracy": 0.96, "fusion_macro_f1": 0.96,
        "fusion_ari": 0.9, "fusion_minus_best_single": 0.01,
        "fusion_per_class": {class_key(c): v for c, v in _per_class(0.96).items()},
        "cv": {k: {"cv_accuracy": 0.9, "cv_accuracy_std": 0.02}
               for k in ("text", "image", "concat", "average_proba", "fusion")},
        "calibration": CALIBRATION,
        "fusion_vs_best_single": {"single": "text", "only_a_right": 6, "only_b_right": 4, "p_value": 0.7539}})
    _predictions(root / "plots/fusion/fusion_confusion.csv", fusion_predictions())
    for name, f1 in TEXT_CLF.items():
        _predictions(root / f"plots/text_classifier/{name}/confusion.csv", cycle_predictions(f1, name))
    if optional:
        for k, (acc, weights, bp) in TRAIN.items():
            backbone, variant = k.rsplit("_", 1)
            _json(m / "train" / f"{k}.json", {
                "backbone": backbone, "variant": variant, "weights": weights, "framework": "keras",
                "backbone_params": bp, "head_params": 532_487, "n_train": 628, "n_train_views": 1256, "n_val": 209,
                "n_test": 210, "test_accuracy": acc, "test_loss": 0.5, "macro_f1": acc - 0.01, "micro_f1": acc,
                "weighted_f1": acc - 0.01, "ari": acc - 0.2, "val_accuracy": acc, "best_epoch": 4, "epochs_run": 7,
                "per_class": _per_class(acc)})
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
        for k, (acc, _, _) in TRAIN.items():
            _predictions(root / f"plots/train/{k}/confusion.csv", cycle_predictions(acc, k))
        _json(m / "register.json", {
            "model_name": "flipkart-product-classifier", "alias": "champion", "selected": "average_proba@0.6",
            "select_by": "cv", "n_test": 175, "n_test_text_only": 0, "test_accuracy": 0.96, "test_macro_f1": 0.96,
            "test_accuracy_with_image": 0.96, "name_only_test_accuracy": 0.91, "name_only_test_macro_f1": 0.905,
            "name_only_failed": 0, "confident_share": 0.8, "confident_accuracy": 0.994,
            "fusion_stage_test_accuracy": 0.96, "selection_accuracy": 0.9})
        label_audit(root)
    for i, rel in enumerate(PLOTS):
        _png(root / "plots" / rel, seed=i)
    return root


def write_timings(root: Path, seed: int) -> list[Path]:
    """Random wall-clock records in reports/timings/ for every stage and key of the generated study, in the
    layout and with the keys the stages write (fkstudy.paths.timings): what a run on another machine, or under
    another load, would leave there. Returns the files written."""
    from fkstudy import paths

    rng = np.random.default_rng(seed)
    keyed = {"text_features": [s.split("_", 1)[1] for s in CLUSTER if s.startswith("text_")],
             "image_features": [s.split("_", 1)[1] for s in CLUSTER if s.startswith("image_")],
             "deep_features": ["vgg16", "clip"], "cluster": list(CLUSTER), "text_classifier": list(TEXT_CLF),
             "train": list(TRAIN), "augment": ["vgg16"], "multiseed": ["vgg16"]}
    single = ["ingest", "clean_text", "prep_images", "pretrained", "zero_shot", "fusion", "label_audit", "register"]
    written = []
    for stage, key in [(s, None) for s in single] + [(s, k) for s, ks in keyed.items() for k in ks]:
        record = {"startup_seconds": round(float(rng.uniform(0.5, 5)), 3),
                  "seconds": round(float(rng.uniform(1, 900)), 3)}
        if stage == "train":
            record.update(fit_seconds=round(float(rng.uniform(5, 900)), 3),
                          seconds_per_epoch=round(float(rng.uniform(0.1, 40)), 3),
                          augment_seconds=round(float(rng.uniform(1, 500)), 3))
        path = root / paths.timings(stage, key)
        _json(path, record)
        written.append(path)
    return written
