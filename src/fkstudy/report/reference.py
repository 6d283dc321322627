"""Numbers the study compares itself with (not computed here).

SEED: the original study notebook (shared/reference/original-study-notebook.txt).
PUBLIC_BEST: the best public reproductions on the same 1050 products, as quoted in
the project's issues. TARGET: what the issues ask this repository to reach.
Keys are the cluster-set names used in dvc.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass

SEED_ARI = {
    "text_tfidf": 0.321,
    "text_word2vec": 0.364,
    "text_bert": 0.400,
    "text_use": 0.643,
    "image_vgg16": 0.349,
    "image_clip": -0.0003,  # a label-ordering bug in the seed, not a measurement of CLIP
}
SEED_NOTES = {"image_clip": "a label-ordering bug in the seed, not a measurement of CLIP"}
PUBLIC_BEST_ARI = {
    "text_tfidf": 0.64,
    "text_bert": 0.60,
    "text_use": 0.50,
    "text_word2vec": 0.30,
    "image_vgg16": 0.69,
}

# The targets of the issue, as data: one row each, with how it is measured (findings.targets reads `measure`
# and `sets` / `key`), the value the issue quotes for the state before this work (`now`, None = not
# measured then), the best public reproduction on the same 1050 products (None = none known) and the target
# (`lower_is_better`: met when the measured value is <= the target, e.g. a calibration error).
# measure: cluster       the ARI of the best of `sets` (random-init sets never count)
#          cluster_best  the ARI of the best set whose name starts with `key` (random-init never counts)
#          text_classifier  the best metrics/text_classifier/* value of `key`
#          image_only    the best real-weights image-only test accuracy: metrics/train/*, metrics/multiseed/*
#                        (mean over seeds) and the fusion stage's image head
#          fusion        metrics/fusion.json `key`
#          calibration   metrics/fusion.json calibration.selected `key` (the selected model, temperature-scaled)
#          register      metrics/register.json `key` (the registered model, end to end)
@dataclass(frozen=True)
class Target:
    id: str
    label: str
    measure: str
    how: str
    now: float | None
    public: float | None
    target: float
    sets: tuple[str, ...] = ()
    key: str = ""
    lower_is_better: bool = False
    public_note: str = ""  # shown instead of `public` when the issue quotes a range
    earlier: bool = False  # an aim of an earlier issue, kept (the target table of the issue does not list it)


TARGETS = (
    Target("ari_tfidf", "TF-IDF clustering ARI", "cluster", "cluster set text_tfidf", 0.586, 0.64, 0.65,
           sets=("text_tfidf",)),
    Target("ari_bert_family", "BERT-family clustering ARI", "cluster", "best of cluster sets text_bert, text_mpnet",
           0.682, 0.60, 0.75, sets=("text_bert", "text_mpnet")),
    Target("ari_use", "USE clustering ARI", "cluster", "cluster set text_use", 0.654, 0.50, 0.70, sets=("text_use",),
           public_note="0.50 (quoted 0.46–0.50)"),
    Target("ari_vgg16", "VGG16 clustering ARI", "cluster", "cluster set image_vgg16", 0.500, 0.69, 0.65,
           sets=("image_vgg16",)),
    Target("ari_best_image", "best real-weights image clustering ARI", "cluster_best",
           "best image_* cluster set that is not random-init", 0.522, None, 0.65, key="image_"),
    Target("text_macro_f1", "text classifier test macro-F1", "text_classifier", "best metrics/text_classifier/*",
           0.938, 0.95, 0.96, key="macro_f1"),
    Target("image_accuracy", "image-only test accuracy, real weights", "image_only",
           "best real-weights metrics/train/* run, metrics/multiseed/* mean over seeds or fusion image head",
           0.852, 0.878, 0.88),
    Target("fusion_accuracy", "text + image fusion test accuracy", "fusion",
           "selected fusion, chosen on train+val, metrics/fusion.json", 0.938, 0.924, 0.96,
           key="fusion_test_accuracy"),
    Target("name_only_accuracy", "registered model, name-only test accuracy", "register",
           "registered model end to end on the name alone, metrics/register.json", None, None, 0.93,
           key="name_only_test_accuracy"),
    Target("calibration_ece", "calibration: test ECE of the selected model", "calibration",
           "temperature-scaled selected fusion on test, metrics/fusion.json calibration", None, None, 0.03,
           key="test_ece", lower_is_better=True),
    Target("accuracy_at_80", "test accuracy at 80 % coverage", "calibration",
           "selected fusion answering its 80 % most confident test products, metrics/fusion.json calibration",
           None, None, 0.99,
           key="test_accuracy_at_80"),
    Target("ari_word2vec", "Word2Vec clustering ARI", "cluster", "cluster set text_word2vec", None, 0.30, 0.45,
           sets=("text_word2vec",), earlier=True),
    Target("ari_classical", "best classical image descriptor clustering ARI", "cluster",
           "best of image_classical, image_sift_bovw, image_orb_bovw", None, None, 0.15,
           sets=("image_classical", "image_sift_bovw", "image_orb_bovw"), earlier=True),
)
TARGET = {t.id: t for t in TARGETS}
assert len(TARGET) == len(TARGETS), "target ids must be unique"

# Per cluster set (the summary table's target column): the target of the row that measures that set alone, or
# of the family row it belongs to (BERT family: text_bert and text_mpnet); group aims over many sets are not
# a per-set target.
TARGET_ARI = {s: t.target for t in TARGETS
              if t.measure == "cluster" and (len(t.sets) == 1 or t.id == "ari_bert_family") for s in t.sets}
# Supervised targets: best text classifier macro-F1, selected text + image fusion test accuracy
TARGET_TEXT_CLASSIFIER_MACRO_F1 = TARGET["text_macro_f1"].target
TARGET_FUSION_TEST_ACCURACY = TARGET["fusion_accuracy"].target

# The seed study's supervised numbers (notebook sections 7, 8.1, 8.3, 8.4, 8.5), same 630/210/210 split.
# Transfer learning, keyed like metrics/train/<backbone>_<variant>.json: base rows from the backbone
# comparison of section 8.4 (accuracy, total parameters backbone + head; its training seconds are a cost figure
# of another machine: the report carries none, docs/benchmarks.md compares costs); the augmented
# VGG16 of section 7 also unfroze the top convolution blocks (fine-tuning), so it is not a frozen-backbone run.
SEED_TRAIN = {
    "vgg16_base": {"test_accuracy": 0.7952, "params": 15_247_175},
    "efficientnetb0_base": {"test_accuracy": 0.8429, "params": 5_368_490},
    "mobilenetv3small_base": {"test_accuracy": 0.8048, "params": 1_537_143},
    # the seed's "augmented" model was augmentation plus block5 fine-tuned: our vgg16_finetuned (fine_tune@vgg16);
    # vgg16_augmented (augmentation, frozen backbone) has no seed counterpart
    "vgg16_finetuned": {"test_accuracy": 0.7762, "params": 15_247_175,
                        "note": "augmentation + block5 fine-tuned"},
}
# Section 8.1: per-class F1 of the seed's best model (base VGG16, test accuracy 0.7857, macro-F1 0.7857)
SEED_PER_CLASS_F1 = {
    "Baby Care": 0.700, "Beauty and Personal Care": 0.750, "Computers": 0.847, "Home Decor & Festive Needs": 0.700,
    "Home Furnishing": 0.778, "Kitchen & Dining": 0.806, "Watches": 0.918,
}
SEED_MACRO_F1 = 0.7857
# Section 8.3: multi-seed VGG16 head, test accuracy mean ± std
SEED_MULTISEED = {"backbone": "vgg16", "test_accuracy": 0.8016, "test_accuracy_std": 0.0073}
# Section 8.5: USE text + VGG16 image fusion, scored on an 80/20 split of the 210 test products only
SEED_FUSION = {"image_test_accuracy": 0.7143, "fusion_test_accuracy": 0.8571, "fusion_macro_f1": 0.8624}
