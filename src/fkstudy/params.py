"""params.yaml: load it, validate it against the schema, and hand it out typed.

The schema is one pydantic model per section (`Params`), assembled from the section models that live
beside their code and from the registries (text, image, heads): a method's section is validated by the
params model of its registry entry. `dvc exp run -S key=value` with a mistyped key silently adds a new
param, and a wrong type only fails deep inside a library: every stage loads params.yaml through
`load_params`, which refuses unknown keys, wrong types and out-of-range values with a `ParamsError`
naming the dotted key. Stages then see only the keys their dvc.yaml entry declares
(fkstudy.runtime.start_stage).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from .data.params import DataParams
from .evaluate.params import ClusterParams
from .image.params import (
    DeepFeaturesParams,
    ImageFeaturesParams,
    PrepImagesParams,
    PretrainedParams,
)
from .image.registry import IMAGE, backbones
from .paths import repo_root
from .schema import ParamsError, Section, params_error
from .text.params import CleanTextParams, TextFeaturesParams
from .text.registry import TEXT
from .train.params import (
    FusionParams,
    GradcamParams,
    LabelAuditParams,
    MultiseedParams,
    RegisterParams,
    TextClassifierParams,
    TrainParams,
    ZeroShotParams,
)

__all__ = ["Params", "ParamsError", "load_params", "validate_params", "repo_root", "feature_sets"]


class MlflowParams(Section):
    experiment: str


def feature_sets() -> tuple[str, ...]:
    """Every feature set the registries can make: text_<method>, then image_<method>."""
    return tuple(f"text_{n}" for n in TEXT) + tuple(f"image_{n}" for n in IMAGE)


class PipelineParams(Section):
    """Which stage instances exist (dvc.yaml's foreach / matrix lists); no stage reads this section."""

    text: list[Literal[TEXT.names()]]                      # text_features@<m>, text_classifier@<m>
    image: list[Literal[IMAGE.names("classical")]]         # image_features@<m>
    deep: list[Literal[IMAGE.names("deep")]]               # deep_features@<m>
    cluster: list[Literal[feature_sets()]]                 # cluster@<set>
    backbones: list[Literal[backbones()]]                  # augment@<b>, train@<b>-<variant>
    variants: list[Literal["base", "augmented"]]
    multiseed: list[Literal[IMAGE.names("deep")]]          # multiseed@<b>
    fine_tune: list[Literal[backbones("keras")]]           # fine_tune@<b>: Keras only

    @model_validator(mode="after")
    def fine_tune_backbones_are_augmented(self):
        missing = [b for b in self.fine_tune if b not in self.backbones]
        if missing:
            raise ValueError(f"fine_tune {missing}: not in pipeline.backbones (fine_tune@<b> starts from augment@<b>)")
        return self


with warnings.catch_warnings():  # the `register` section shadows ABCMeta.register on the class, harmlessly
    warnings.filterwarnings("ignore", message='Field name "register"')

    class Params(Section):
        pipeline: PipelineParams
        seed: int = Field(ge=0)                 # split, Word2Vec, t-SNE, KMeans, training
        n_jobs: int = Field(ge=1, le=64)        # threads each stage may use
        data: DataParams
        clean_text: CleanTextParams
        text_features: TextFeaturesParams
        cluster: ClusterParams
        mlflow: MlflowParams
        prep_images: PrepImagesParams
        image_features: ImageFeaturesParams
        pretrained: PretrainedParams
        deep_features: DeepFeaturesParams
        train: TrainParams
        gradcam: GradcamParams
        zero_shot: ZeroShotParams
        multiseed: MultiseedParams
        fusion: FusionParams
        text_classifier: TextClassifierParams
        register: RegisterParams
        label_audit: LabelAuditParams



def validate_params(raw) -> Params:
    """The typed params, or a ParamsError naming the first bad dotted key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params: the top level must be a mapping, got {raw!r}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise params_error(exc, Params) from None


def read_yaml(path: str | os.PathLike) -> object:
    """A YAML file parsed safely, refusing duplicate keys; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None


def load_params(path: str | os.PathLike | None = None) -> Params:
    return validate_params(read_yaml(Path(path) if path else repo_root() / "params.yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last,
    e.g. after a merge left two `seed:` lines)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges; its keys may be overridden on purpose
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader's own "found unhashable key" error follows
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)
