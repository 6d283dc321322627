"""Stage fine_tune@<backbone>: the seed study's "augmented" model, like for like — augmentation plus the backbone's
last `train.fine_tune.unfreeze_layers` layers (VGG16's block5) trained, early-stopped on val. Keras backbones only;
the outputs are stages/train.py's (`run` with variant `finetuned`).

Protocol (a study decision, recorded as `protocol` in the metrics): it starts from train@<backbone>-augmented's
trained head (models/train/<backbone>_augmented/head.keras) instead of refitting it; the frozen blocks (VGG16
blocks 1-4) run ONCE, on the val photos and on the train photos plus a fixed set of their augmented views (the
very views of the `augment` stage: fkstudy.image.augment, `train.augment.*`, `seed`); block5 + head train on those
cached block-4 activations, epoch e on the photos or one view set in turn — fixed views, not fresh augmentation
every epoch (fkstudy.train.fine_tune). Those activations are the ones deep_features@<backbone> and augment@<backbone>
stored (`deep_features.<backbone>.activations_at`: the input of block5_conv1) when they match the cut; otherwise
the frozen blocks run here — the same numbers either way.
"""
import _bootstrap  # noqa: F401

import train  # stages/train.py
from fkstudy import paths
from fkstudy.image.keras_models import is_keras
from fkstudy.image.registry import backbones
from fkstudy.runtime import run_stage, stage_argument
from fkstudy.train import fine_tune


def main(argv=None) -> None:
    (backbone,) = stage_argument(argv, [tuple(b for b in backbones() if is_keras(b))],
                                 "python stages/fine_tune.py <keras backbone>")
    start = paths.train_model(f"{backbone}_{fine_tune.START_HEAD}")

    def fit(d, cfg, seed, **photos):
        head = fine_tune.load_start_head(start, d.classes, f"dvc repro train@{backbone}-{fine_tune.START_HEAD}")
        cached = fine_tune.load_cached(paths.features("image", backbone), paths.augmented(backbone), cfg.augment, seed)
        return fine_tune.fine_tune_classifier(backbone, d, cfg, seed, head=head, cached=cached, **photos)

    train.run(backbone, "finetuned", fit)


if __name__ == "__main__":
    run_stage(main)
