"""params.yaml sections `image_features` / `deep_features`, assembled from the image registry: one section per
registered method of that kind, validated by its own model. (`prep_images` is validated by
fkstudy.image.preprocess.PrepImagesParams, `pretrained` by fkstudy.weightfiles.PretrainedParams.)"""
from __future__ import annotations

from pydantic import create_model

from ..schema import Section
from .registry import IMAGE


def _methods_section(model_name: str, kind: str):
    names = IMAGE.names(kind)
    return create_model(model_name, __base__=Section, **{n: (IMAGE[n].params, ...) for n in names})


ImageFeaturesParams = _methods_section("ImageFeaturesParams", "classical")
DeepFeaturesParams = _methods_section("DeepFeaturesParams", "deep")
