"""Numbers the study compares itself with (not computed here).

SEED: the original study notebook (shared/reference/original-study-notebook.txt).
PUBLIC_BEST: the best public reproductions on the same 1050 products, as quoted in
the project's issues. TARGET: what the issues ask this repository to reach.
Keys are the cluster-set names used in dvc.yaml.
"""
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
}
TARGET_ARI = {
    "text_tfidf": 0.65,
    "text_word2vec": 0.45,
    "text_bert": 0.65,
    "text_use": 0.70,
}

# Aims quoted in the project's issues for the best representation of a group (README "Results"):
# (label, cluster sets in the group, minimum ARI of the group's best set); random-init sets never count
GROUP_AIM_ARI = [
    ("best pretrained image representation", ("image_vgg16", "image_efficientnet_lite0", "image_efficientnetb0",
                                              "image_mobilenetv3small", "image_clip"), 0.70),
    ("best classical image descriptor", ("image_classical", "image_sift_bovw", "image_orb_bovw"), 0.15),
]
# Supervised targets from the issues: best text classifier macro-F1, best text + image fusion test accuracy
TARGET_TEXT_CLASSIFIER_MACRO_F1 = 0.97
TARGET_FUSION_TEST_ACCURACY = 0.97

# The seed study's supervised numbers (notebook sections 7, 8.1, 8.3, 8.4, 8.5), same 630/210/210 split.
# Transfer learning, keyed like metrics/train/<backbone>_<variant>.json: base rows from the backbone
# comparison of section 8.4 (accuracy, training seconds, total parameters backbone + head); the augmented
# VGG16 of section 7 also unfroze the top convolution blocks (fine-tuning), so it is not a frozen-backbone run.
SEED_TRAIN = {
    "vgg16_base": {"test_accuracy": 0.7952, "fit_seconds": 111.69, "params": 15_247_175},
    "efficientnetb0_base": {"test_accuracy": 0.8429, "fit_seconds": 63.14, "params": 5_368_490},
    "mobilenetv3small_base": {"test_accuracy": 0.8048, "fit_seconds": 18.50, "params": 1_537_143},
    "vgg16_augmented": {"test_accuracy": 0.7762, "fit_seconds": 321.20, "params": 15_247_175,
                        "note": "fine-tuned top blocks"},
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
