"""Every file the pipeline reads or writes, relative to the repository root (stages chdir there).

dvc.yaml names the same paths (it cannot import Python); tests/unit/test_registries.py checks that each
stage's outputs in dvc.yaml are the ones built here.
"""
from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The repository the stage runs in: the nearest folder up from the cwd holding dvc.yaml.

    Not $DVC_ROOT: in a queued/--temp experiment DVC runs the stage inside the copy under
    .dvc/tmp/exps but sets DVC_ROOT to the original repository, so trusting it made a temp
    experiment read the workspace's params.yaml and overwrite the workspace's outputs (measured).
    """
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").exists():
            return d
    return here


CATALOG = "data/interim/catalog.parquet"
TEXT = "data/interim/text.parquet"
IMAGE_CACHE = "data/interim/images.npz"
IMAGE_QUALITY = "data/interim/image_quality.parquet"
PRETRAINED_RECORDS = "data/pretrained"
INGEST_PROBLEMS = "reports/ingest_problems.csv"
LABEL_ISSUES = "reports/label_issues.csv"
PREP_FAILURES = "reports/prep_images_failures.csv"


def feature_set(set_name: str) -> str:
    """The feature file of a feature set "<modality>_<method>" (text_bow, image_vgg16, augmented_vgg16)."""
    return f"data/features/{set_name}.npz"


def features(modality: str, name: str) -> str:
    """The feature file of one representation: data/features/<text|image>_<name>.npz."""
    return feature_set(f"{modality}_{name}")


def augmented(backbone: str) -> str:
    """The augmented views of the train photos through `backbone` (ids "<product id>#<view>")."""
    return feature_set(f"augmented_{backbone}")


def weights_record(modality: str, name: str) -> str:
    """What the `pretrained` stage found for one representation's weights (a dependency of its stage)."""
    return f"{PRETRAINED_RECORDS}/{modality}/{name}.json"


def metrics(*parts: str) -> str:
    return metrics_dir(*parts) + ".json"


def metrics_dir(*parts: str) -> str:
    return "/".join(("metrics", *parts))


def plots(*parts: str) -> str:
    return "plots/" + "/".join(parts)


def timings(stage: str, key: str | None = None) -> str:
    return f"reports/timings/{stage}/{key}.json" if key else f"reports/timings/{stage}.json"


def catalog_features(modality: str, name: str) -> str:
    """A representation over the catalogue file (`scale.catalog`): catalog_text@<name> / catalog_image@<name>."""
    return f"data/catalog/features/{modality}_{name}.npz"


def catalog_failures(modality: str, name: str) -> str:
    """The catalogue's products a catalog_<modality>@<name> job could not encode (line, id, reason)."""
    return f"reports/catalog_{modality}/{name}_failures.csv"


def catalog_predictions(alias: str) -> str:
    """The catalogue scored by models:/<register.model_name>@<alias> (score_catalog@<alias>)."""
    return f"data/catalog/predictions_{alias}.csv"


def train_model(key: str) -> str:
    return f"models/train/{key}"


FUSION_MODEL = "models/fusion"
