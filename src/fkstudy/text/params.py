"""params.yaml sections of the text half: `clean_text`, and `text_features` (assembled from the text
registry: `fit_on`, and one section per registered method, validated by its own model)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model

from ..schema import Section
from .registry import TEXT


class CleanTextParams(Section):
    min_token_len: int = Field(ge=1, le=10)
    stopwords: Literal["sklearn", "none"]   # scikit-learn's English list (NLTK's corpus cannot be downloaded here)
    extra_stopwords: list[str]
    keep_digits: bool


TextFeaturesParams = create_model(
    "TextFeaturesParams", __base__=Section,
    fit_on=(Literal["train", "all"], ...),             # learned steps fitted on train ids only (leak-free), or all
    **{name: (entry.params, ...) for name, entry in TEXT.items()})
