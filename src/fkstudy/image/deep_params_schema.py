"""Schema of the `pretrained` and `deep_features` params (to merge into fkstudy.config.SCHEMA).

    from fkstudy.image.deep_params_schema import DEEP_SCHEMA
    SCHEMA.update(DEEP_SCHEMA)
"""
from fkstudy.config import BOOL, STR, P

BATCH = P(int, lo=1, hi=1024)

DEEP_SCHEMA: dict = {
    "pretrained": {
        "dir": STR,                 # local weights dir (relative to the repo root), git-ignored
        "allow_random_init": BOOL,  # no weights anywhere: random init + loud warning, or stop
        "allow_download": BOOL,     # let the library download into its cache when not found
    },
    "deep_features": {
        "vgg16": {"batch_size": BATCH, "variant": P(str, choices=("gap", "flatten"))},
        "efficientnetb0": {"batch_size": BATCH},
        "mobilenetv3small": {"batch_size": BATCH},
        "efficientnet_lite0": {"batch_size": BATCH, "normalization": P(str, choices=("imagenet", "inception"))},
        "clip": {"batch_size": BATCH, "arch": STR, "tag": STR},
    },
}
