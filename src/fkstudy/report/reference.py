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
