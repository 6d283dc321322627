"""params.yaml schema of the stages that train heads on cached features (multiseed, fusion,
text_classifier). Merged into fkstudy.config.full_schema()."""
from __future__ import annotations

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
    "multiseed": {"n_seeds": P(int, lo=2, hi=50), "head": dict(HEAD)},
    "fusion": {
        "text_set": P(str, choices=("bow", "tfidf", "word2vec", "glove", "bert", "use")),
        "image_set": P(str, choices=("vgg16", "efficientnet_lite0", "efficientnetb0", "mobilenetv3small", "clip")),
        "modes": P(list, item=P(str, choices=("concat", "average_proba")),
                   check=lambda v: None if v else "needs at least one mode"),
        "head": dict(HEAD),
        **CV,
    },
    "text_classifier": {"head": dict(HEAD), **CV},
}
