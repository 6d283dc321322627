"""params.yaml section `pipeline`: which stage instances exist (the lists dvc.yaml's foreach / matrix iterate).

No stage reads this section (DVC does, to expand the stages); it is checked against the registries when the
whole file is validated (`fkstudy.params.load_params()` without sections, tests/unit/test_registries.py).
A stage instance whose method is not registered fails at its start anyway: its params section is missing.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .image.registry import IMAGE, backbones
from .schema import Section
from .text.registry import FINE_TUNABLE, TEXT, pretrained_encoders


def feature_sets() -> tuple[str, ...]:
    """Every feature set the registries can make: text_<method>, then image_<method>."""
    return tuple(f"text_{n}" for n in TEXT) + tuple(f"image_{n}" for n in IMAGE)


def vocabulary_methods() -> tuple[str, ...]:
    """Text methods whose feature columns are terms (their feature file's meta holds the vocabulary)."""
    return tuple(n for n, e in TEXT.items() if e.extra.get("vocabulary"))


class PipelineParams(Section):
    text: list[Literal[TEXT.names()]]                      # text_features@<m>, text_classifier@<m>
    text_terms: list[Literal[vocabulary_methods()]]        # text_terms@<m>
    image: list[Literal[IMAGE.names("classical")]]         # image_features@<m>
    deep: list[Literal[IMAGE.names("deep")]]               # deep_features@<m>
    cluster: list[Literal[feature_sets()]]                 # cluster@<set>
    backbones: list[Literal[backbones()]]                  # augment@<b>, train@<b>-<variant>
    variants: list[Literal["base", "augmented"]]
    multiseed: list[Literal[IMAGE.names("deep")]]          # multiseed@<b>
    fine_tune: list[Literal[backbones("keras")]]             # fine_tune@<b>: Keras only
    fine_tune_text: list[Literal[FINE_TUNABLE]]               # fine_tune_text@<m>: an encoder trained end to end
    catalog_text: list[Literal[pretrained_encoders()]]      # catalog_text@<m> (fkstudy.scale)
    catalog_image: list[Literal[backbones("torch")]]         # catalog_image@<b>
    score_catalog: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]]   # score_catalog@<alias>

    @model_validator(mode="after")
    def terms_have_features(self):
        missing = sorted(set(self.text_terms) - set(self.text))
        if missing:
            raise ValueError(f"{missing}: in pipeline.text_terms but not in pipeline.text (text_terms@<m> reads "
                             "text_features@<m>'s feature file)")
        return self

    @model_validator(mode="after")
    def backbones_have_features(self):
        missing = sorted({*self.backbones, *self.multiseed} - set(self.deep))
        if missing:
            raise ValueError(f"{missing}: in pipeline.backbones / pipeline.multiseed but not in pipeline.deep "
                             "(their stages read deep_features@<b>'s feature file)")
        return self

    @model_validator(mode="after")
    def fine_tune_backbones_are_augmented(self):
        missing = [b for b in self.fine_tune if b not in self.backbones]
        if missing:
            raise ValueError(f"fine_tune {missing}: not in pipeline.backbones (fine_tune@<b> starts from augment@<b>)")
        if self.fine_tune and "augmented" not in self.variants:
            raise ValueError("fine_tune needs `augmented` in pipeline.variants (fine_tune@<b> starts from the head of "
                             "train@<b>-augmented)")
        return self
