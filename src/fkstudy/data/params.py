"""params.yaml section `data` (ingest, and the raw-data location read by prep_images and register)."""
from __future__ import annotations

from pydantic import Field, model_validator

from ..schema import Section


class Split(Section):
    train: float = Field(ge=0.0, le=1.0)
    val: float = Field(ge=0.0, le=1.0)
    test: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sums_to_one(self):
        total = self.train + self.val + self.test
        if abs(total - 1.0) >= 1e-6:
            raise ValueError(f"fractions must sum to 1, got {total}")
        return self


class DataParams(Section):
    raw_dir: str                          # the folder holding csv_name and image_dir (a link under data/raw)
    csv_name: str
    image_dir: str
    categories: list[str]                 # expected top-level categories; other rows are quarantined
    split: Split                          # stratified, seeded
    min_per_class: int = Field(ge=2)
    max_image_pixels: int = Field(ge=10_000)   # decompression-bomb guard
    min_image_side: int = Field(ge=1)
    tree_max_depth: int = Field(ge=1, le=10)
    top_spec_keys: int = Field(ge=1)
    top_spec_values: int = Field(ge=1)
