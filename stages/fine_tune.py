"""Stage fine_tune@<backbone>: the seed study's "augmented" model, like for like — the augmented head, then the
backbone's last `train.fine_tune.unfreeze_layers` layers (VGG16's block5) trained end to end on photos augmented
on the fly, early-stopped on val. One transfer-learning script serves every variant: this runs
stages/train.py's main with variant `finetuned` (Keras backbones only)."""
import _bootstrap  # noqa: F401

import train  # stages/train.py
from fkstudy.image.keras_models import is_keras
from fkstudy.image.registry import backbones
from fkstudy.runtime import run_stage, stage_argument


def main(argv=None) -> None:
    (backbone,) = stage_argument(argv, [tuple(b for b in backbones() if is_keras(b))],
                                 "python stages/fine_tune.py <keras backbone>")
    train.main([backbone, "finetuned"])


if __name__ == "__main__":
    run_stage(main)
