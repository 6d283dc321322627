"""params.yaml section `scale`: the catalogue-scale jobs (catalog_text@<m>, catalog_image@<m>, score_catalog@<alias>).

Which jobs exist is the `pipeline.catalog_text / catalog_image / score_catalog` lists (empty by default: the
study's `dvc repro` runs none of them). `engine` and `ray_address` change where the work runs, not what it
computes: a job's outputs are byte-identical on both engines (same chunks, same functions, same pinned numerics).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..schema import Section

ENGINES = ("local", "ray")


class ScaleParams(Section):
    catalog: str = Field(min_length=1)     # a products CSV as `python -m fkstudy predict --input` reads it
    engine: Literal[ENGINES]               # local: this process | ray: Ray Data on the cluster at ray_address
    ray_address: str                       # "" = a one-machine Ray started for the job; "auto"; "<head>:6379"
    workers: int = Field(ge=1, le=1024)    # model replicas (Ray actors), each n_jobs threads and n_jobs CPUs
    chunk_rows: int = Field(ge=1, le=1_000_000)   # readable products per unit of work (one Ray task, retried whole)
    batch_size: int = Field(ge=1, le=4096)        # score_catalog: products per model call (`predict --batch-size`)
    top_k: int = Field(ge=1, le=100)               # score_catalog: categories per product (`predict --top`)

    @field_validator("ray_address")
    @classmethod
    def _no_spaces(cls, v: str) -> str:
        if v != v.strip() or " " in v:
            raise ValueError(f"must be an address without spaces, got {v!r}")
        return v


def check_chunking(chunk_rows: int, batch_size: int, what: str) -> None:
    """A chunk holds whole model batches: the batches of a job are then the same whoever runs the chunk, and the
    same as one process running the whole file in order (the image streams, USE, `predict --input`)."""
    from ..errors import StudyError

    if chunk_rows % batch_size:
        raise StudyError(f"scale.chunk_rows={chunk_rows} is not a multiple of {what}={batch_size}: a chunk must "
                         "hold whole batches (set scale.chunk_rows to a multiple of it)")
