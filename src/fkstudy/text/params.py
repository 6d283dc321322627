"""params.yaml section `text_features`, assembled from the text registry: `fit_on`, and one section per
registered method, validated by its own model. (`clean_text` is validated by fkstudy.text.clean.CleanTextParams.)"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model

from ..schema import Section
from .registry import TEXT


TextFeaturesParams = create_model(
    "TextFeaturesParams", __base__=Section,
    fit_on=(Literal["train", "all"], ...),             # learned steps fitted on train ids only (leak-free), or all
    **{name: (entry.params, ...) for name, entry in TEXT.items()})


class FineTuneTextParams(Section):
    """Section `fine_tune_text` (stage fine_tune_text@<encoder>, fkstudy.text.fine_tune)."""

    views: list[Literal["both", "name", "description"]] = Field(min_length=1)   # each train product once per view
    target: Literal["category", "category_l2"]     # the head's classes (fkstudy.labels), read at the top level
    max_length: int = Field(ge=8, le=512)
    batch_size: int = Field(ge=1, le=1024)
    lr: float = Field(gt=0.0, le=1.0)              # the encoder's
    head_lr: float = Field(gt=0.0, le=1.0)         # the new linear head's
    weight_decay: float = Field(ge=0.0, le=1.0)
    warmup: float = Field(ge=0.0, lt=1.0)          # fraction of the steps
    dropout: float = Field(ge=0.0, le=0.9)         # on the pooled embedding, before the head
    epochs: int = Field(ge=1, le=100)              # each scored on val; the lowest val loss is kept
