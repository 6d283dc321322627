"""params.yaml schema of the stages that train heads on cached features (multiseed, fusion, register,
text_classifier). Merged into fkstudy.config.full_schema()."""
from __future__ import annotations

import re

from fkstudy.config import P

HEAD = {
    "type": P(str, choices=("logreg", "mlp", "linear_svm")),
    "scale": P(str, choices=("standard", "l2", "none")),
    "C": P(list, item=P(float, lo=1e-6, hi=1e6), check=lambda v: None if v else "needs at least one value"),
    "hidden": P(list, item=P(int, lo=1, hi=4096)),
    "alpha": P(float, lo=0.0, hi=100.0),
    "lr": P(float, lo=1e-6, hi=1.0),
    "batch_size": P(int, lo=1, hi=4096),
    "max_iter": P(int, lo=1, hi=100_000),
    "patience": P(int, lo=1, hi=1000),
}
CV = {"n_splits": P(int, lo=2, hi=20), "n_repeats": P(int, lo=1, hi=20)}

TRAIN_SCHEMA: dict = {
    "train": {
        "head": {"units": P(int, lo=1, hi=8192), "dropout": P(float, lo=0.0, hi=0.95)},
        "optimizer": P(str, choices=("adam", "sgd", "rmsprop")),
        "lr": P(float, lo=1e-7, hi=1.0),
        "batch_size": P(int, lo=1, hi=4096),
        "epochs": P(int, lo=1, hi=10_000),
        "patience": P(int, lo=1, hi=1000),
        "fine_tune": {"unfreeze_layers": P(int, lo=0, hi=500), "lr": P(float, lo=1e-8, hi=1.0),
                      "epochs": P(int, lo=1, hi=1000)},
        "augment": {"views": P(int, lo=1, hi=50), "flip": P(bool), "rotation": P(float, lo=0.0, hi=180.0),
                    "zoom": P(float, lo=0.0, hi=0.9), "brightness": P(float, lo=0.0, hi=0.9)},
    },
    "zero_shot": {"prompt_template": P(str, check=lambda v: None if "{}" in v else "must contain {} for the category"),
                  "batch_size": P(int, lo=1, hi=4096)},
    "gradcam": {"n_examples": P(int, lo=1, hi=50), "alpha": P(float, lo=0.0, hi=1.0)},
    "multiseed": {"n_seeds": P(int, lo=2, hi=50), "head": dict(HEAD)},
    "fusion": {
        "text_set": P(str, choices=("bow", "tfidf", "word2vec", "glove", "bert", "use")),
        "image_set": P(str, choices=("vgg16", "efficientnet_lite0", "efficientnetb0", "mobilenetv3small", "clip")),
        "modes": P(list, item=P(str, choices=("concat", "average_proba", "geometric_proba")),
                   check=lambda v: None if v else "needs at least one mode"),
        "text_weights": P(list, item=P(float, lo=0.0, hi=1.0)),  # w of P_text; 0 and 1 (single modalities) always compete
        "select_by": P(str, choices=("cv", "val")),
        "head": dict(HEAD),
        **CV,
    },
    "text_classifier": {"head": dict(HEAD), **CV},
    "register": {
        "model_name": P(str, check=lambda v: None if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v)
                        else "must be letters, digits, '_', '.', '-' (an MLflow registered model name)"),
        "alias": P(str, check=lambda v: None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", v) and v != "latest"
                   and not re.fullmatch(r"[vV]\d+", v) else "must be an MLflow alias: letters, digits, '_', '-', "
                   "not 'latest' nor v<number>"),
        "promote": P(str, choices=("always", "if_better")),
    },
}
