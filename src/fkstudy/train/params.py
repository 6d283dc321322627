"""params.yaml sections of the supervised half: train (+ augment, fine_tune), gradcam, zero_shot, multiseed,
text_classifier, fusion and register. A method named here (fusion.text_set, ...) is checked against the methods
params.yaml declares (fkstudy.schema.check_method), so loading these sections imports no registry."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..schema import Section, check_method
from .head_registry import HeadParams


class HeadLayers(Section):
    units: int = Field(ge=1, le=8192)
    dropout: float = Field(ge=0.0, le=0.95)


class FineTune(Section):
    unfreeze_layers: int = Field(ge=1, le=500)   # last N weight layers of a Keras backbone trainable (VGG16 block5: 3)
    lr: float = Field(ge=1e-8, le=1.0)
    epochs: int = Field(ge=1, le=1000)


class Augment(Section):
    views: int = Field(ge=1, le=50)
    flip: bool
    rotation: float = Field(ge=0.0, le=180.0)
    zoom: float = Field(ge=0.0, le=0.9)
    brightness: float = Field(ge=0.0, le=0.9)


class TrainParams(Section):
    head: HeadLayers
    optimizer: Literal["adam", "sgd", "rmsprop"]
    lr: float = Field(ge=1e-7, le=1.0)
    batch_size: int = Field(ge=1, le=4096)
    epochs: int = Field(ge=1, le=10_000)
    patience: int = Field(ge=1, le=1000)
    fine_tune: FineTune
    augment: Augment


class ZeroShotParams(Section):
    prompt_template: str
    batch_size: int = Field(ge=1, le=4096)

    @field_validator("prompt_template")
    @classmethod
    def has_slot(cls, v: str) -> str:
        if "{}" not in v:
            raise ValueError("must contain {} for the category")
        return v


class GradcamParams(Section):
    n_examples: int = Field(ge=1, le=50)
    alpha: float = Field(ge=0.0, le=1.0)


class MultiseedParams(Section):
    n_seeds: int = Field(ge=2, le=50)
    head: HeadParams


class CVParams(Section):
    n_splits: int = Field(ge=2, le=20)
    n_repeats: int = Field(ge=1, le=20)


# the labels a head is fitted on (fkstudy.labels.TARGETS); more than one -> chosen by CV accuracy on train+val
Targets = Annotated[list[Literal["category", "category_l2"]], Field(min_length=1)]


def _distinct(v: list) -> list:
    if len(set(v)) != len(v):
        raise ValueError(f"targets repeat a name: {v}")
    return v


class TextClassifierParams(CVParams):
    head: HeadParams
    targets: Targets = ["category"]

    _targets = field_validator("targets")(_distinct)


class CalibrationParams(Section):
    target_accuracy: float = Field(gt=0.0, le=1.0)   # the answer threshold is the lowest reaching it out of fold
    bins: int = Field(ge=2, le=100)                  # reliability diagram / ECE bins


class NamesFeatureSets(Section):
    """A section naming a text method (`text_set`, `name_set`) and a deep image method (`image_set`): each checked
    against the methods params.yaml declares (fkstudy.schema.check_method), so no registry is imported."""

    @field_validator("text_set", "name_set", check_fields=False)
    @classmethod
    def text_method(cls, v: str, info: ValidationInfo) -> str:
        return check_method(v, info, "text_features")

    @field_validator("image_set", check_fields=False)
    @classmethod
    def deep_method(cls, v: str, info: ValidationInfo) -> str:
        return check_method(v, info, "deep_features")


class FusionParams(CVParams, NamesFeatureSets):
    text_set: str                                   # a method of text_features
    image_set: str                                  # a method of deep_features, with REAL weights (random-init refused)
    name_set: str                                   # text_set's encoder on the name alone: the name-only head
    modes: list[Literal["concat", "average_proba", "geometric_proba"]] = Field(min_length=1)
    text_weights: list[Annotated[float, Field(ge=0.0, le=1.0)]]   # w of P_text; 0 and 1 (each modality alone) always compete
    select_by: Literal["cv", "val"]
    head: HeadParams
    calibration: CalibrationParams
    targets: Targets = ["category"]                 # the heads' labels: top level / tree level 2, chosen by select_by
    name_targets: Targets = ["category"]            # the name head's labels: top level / tree level 2, chosen by CV

    _targets = field_validator("targets", "name_targets")(_distinct)


class RegisterParams(Section):
    model_name: str
    alias: str                          # the production alias (champion): what predict and serving load
    promote: Literal["always", "if_better"]
    challenger_alias: str               # versions not promoted (experiments, other branches, worse scores)
    production_branch: str              # the git branch whose pipeline may move `alias`

    @field_validator("model_name")
    @classmethod
    def registered_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("must be letters, digits, '_', '.', '-' (an MLflow registered model name)")
        return v

    @field_validator("alias", "challenger_alias")
    @classmethod
    def mlflow_alias(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", v) or v == "latest" or re.fullmatch(r"[vV]\d+", v):
            raise ValueError("must be an MLflow alias: letters, digits, '_', '-', not 'latest' nor v<number>")
        return v

    @field_validator("production_branch")
    @classmethod
    def branch_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", v) or v == "HEAD" or ".." in v:
            raise ValueError("must be a git branch name (e.g. main)")
        return v

    @model_validator(mode="after")
    def two_aliases(self):
        if self.challenger_alias == self.alias:
            raise ValueError(f"challenger_alias must differ from alias ({self.alias!r}): experiments would move "
                             "the production alias")
        return self


class LabelAuditParams(NamesFeatureSets):
    text_set: str                                    # a method of text_features
    image_set: str                                   # a method of deep_features, with REAL weights
    head: HeadParams
    n_splits: int = Field(ge=2, le=20)               # out-of-fold: each product scored by a head that never saw it
    examples: int = Field(ge=1, le=60)               # suspected errors shown with their photo

