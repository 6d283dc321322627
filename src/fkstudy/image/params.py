"""params.yaml sections of the image half: `prep_images`, `pretrained`, and `image_features` /
`deep_features` (assembled from the image registry: one section per registered method of that kind,
validated by its own model)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model

from ..schema import Section
from .registry import IMAGE


class PrepImagesParams(Section):
    size: int = Field(ge=32, le=1024)                 # square side of the cached images
    aspect: Literal["pad", "crop", "stretch"]
    blank_threshold: float = Field(ge=0.0, le=255.0)  # grey-level std below which a photo is near-blank
    jpeg_draft: bool                                  # libjpeg reduced-size decoding (fast, anti-aliased)
    samples_per_category: int = Field(ge=1, le=20)


class PretrainedParams(Section):
    dir: str                    # local weights dir (relative to the repo root), git-ignored
    allow_random_init: bool     # no weights anywhere: random init + loud warning, or stop
    allow_download: bool        # let the library download into its cache when not found


def _methods_section(model_name: str, kind: str):
    names = IMAGE.names(kind)
    return create_model(model_name, __base__=Section, **{n: (IMAGE[n].params, ...) for n in names})


ImageFeaturesParams = _methods_section("ImageFeaturesParams", "classical")
DeepFeaturesParams = _methods_section("DeepFeaturesParams", "deep")
