"""params.yaml section `cluster` (the cluster@<set> stages)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..schema import Section, feature_set_names

Reduction = Literal["none", "pca", "lsa", "tsne"]


def _no_limit_or_at_least(v: int, low: int = 100) -> int:
    if v != 0 and v < low:
        raise ValueError(f"must be 0 (no limit) or >= {low}, got {v!r}")
    return v


class ClusterParams(Section):
    reductions: list[Reduction]           # each is computed and reported
    primary: Reduction                    # the one reported as `ari`, unless the set has its own below
    primary_by_set: dict[str, Reduction]  # e.g. {text_tfidf: lsa}: a set's own primary reduction (chosen on train+val)
    pca_components: int = Field(ge=2, le=1000)
    lsa_components: int = Field(ge=2, le=1000)
    variance_components: int = Field(ge=2, le=1000)   # PCA explained variance reported up to this many (the elbow)
    tsne_perplexity: float = Field(ge=2, le=200)
    tsne_perplexity_by_set: dict[str, Annotated[float, Field(ge=2, le=200)]]   # a set's own (the tsne_perplexity sweep: train+val ARI)
    tsne_pca_components: int = Field(ge=0, le=1000)
    tsne_metric: Literal["euclidean", "cosine"]
    tsne_init: Literal["random", "pca"]
    normalize: Literal["l2", "standard", "none"]
    n_seeds: int = Field(ge=1, le=50)
    kmeans_n_init: int = Field(ge=1, le=100)
    tsne_max_samples: int = Field(ge=0)
    silhouette_max_samples: int = Field(ge=0)

    @field_validator("tsne_max_samples", "silhouette_max_samples")
    @classmethod
    def check_limit(cls, v: int) -> int:
        return _no_limit_or_at_least(v)

    @field_validator("primary_by_set", "tsne_perplexity_by_set")
    @classmethod
    def by_set_names_are_feature_sets(cls, v: dict, info: ValidationInfo) -> dict:
        known = feature_set_names(info)
        unknown = sorted(set(v) - known) if known is not None else []
        if unknown:
            raise ValueError(f"{unknown} are not feature sets (text_<method> / image_<method> of params.yaml's "
                             "text_features / image_features / deep_features)")
        return v

    @model_validator(mode="after")
    def primary_is_computed(self):
        wanted = {"primary": self.primary, **{f"primary_by_set.{k}": v for k, v in self.primary_by_set.items()}}
        missing = {k: v for k, v in wanted.items() if v not in self.reductions}
        if missing:
            raise ValueError(f"{missing} not among cluster.reductions {self.reductions}")
        return self
