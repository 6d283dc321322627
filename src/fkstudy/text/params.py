"""params.yaml section `text_features`, assembled from the text registry: `fit_on`, and one section per
registered method, validated by its own model. (`clean_text` is validated by fkstudy.text.clean.CleanTextParams.)"""
from __future__ import annotations

from typing import Literal

from pydantic import create_model

from ..schema import Section
from .registry import TEXT


TextFeaturesParams = create_model(
    "TextFeaturesParams", __base__=Section,
    fit_on=(Literal["train", "all"], ...),             # learned steps fitted on train ids only (leak-free), or all
    **{name: (entry.params, ...) for name, entry in TEXT.items()})
