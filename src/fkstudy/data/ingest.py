"""Ingest: CSV + image folder -> catalog (one row per product, keyed by id) + problem report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .catalog import (
    CatalogError,
    Problems,
    build_catalog,
    read_csv_strict,
    stratified_split,
)
from .images import OK, inspect_images, mode_note


@dataclass
class IngestResult:
    catalog: pd.DataFrame
    problems: pd.DataFrame
    rows_read: int


def run_ingest(raw_dir: Path, data_params, seed: int, n_jobs: int = 1) -> IngestResult:
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise CatalogError(
            f"data directory {raw_dir} does not exist. Run `bash scripts/setup.sh` (it links FLIPKART_DATA or "
            f"../shared/data/flipkart there) or set data.raw_dir in params.yaml to a copy of the Flipkart sample.")
    csv_path = raw_dir / data_params.csv_name
    image_dir = raw_dir / data_params.image_dir
    if not image_dir.is_dir():
        raise CatalogError(f"image folder {image_dir} does not exist (data.image_dir)")
    if not any(image_dir.iterdir()):
        raise CatalogError(f"image folder {image_dir} is empty")

    problems = Problems()
    raw = read_csv_strict(csv_path, problems)
    catalog = build_catalog(raw, expected_categories=data_params.categories,
                            min_per_class=data_params.min_per_class, problems=problems, file=csv_path.name)

    paths = [image_dir / name if name else image_dir / "__no_image__" for name in catalog["image"]]
    checks = inspect_images(paths, data_params.max_image_pixels, data_params.min_image_side, n_jobs)
    catalog["image_status"] = [c.status for c in checks]
    catalog["image_width"] = [c.width for c in checks]
    catalog["image_height"] = [c.height for c in checks]
    catalog["image_mode"] = [c.mode for c in checks]
    catalog["image_format"] = [c.format for c in checks]
    catalog["image_bytes"] = [c.file_bytes for c in checks]
    for rec, chk in zip(catalog[["csv_row", "id", "image"]].to_dict("records"), checks):
        if chk.status != OK:
            problems.add(file=rec["image"] or "", row=rec["csv_row"], id=rec["id"], column="image",
                         kind=f"image_{chk.status}", action="flagged",
                         detail=f"{chk.detail}; product kept for the text stages, left out of the image stages")
        elif mode_note(chk.mode):
            problems.add(file=rec["image"], row=rec["csv_row"], id=rec["id"], column="image",
                         kind=f"image_mode_{mode_note(chk.mode)}", action="flagged",
                         detail=f"mode {chk.mode}: converted to RGB when decoded")

    catalog["split"] = stratified_split(catalog["id"], catalog["category"], data_params.split.model_dump(), seed).values
    catalog = catalog.sort_values("id", kind="stable").reset_index(drop=True)
    return IngestResult(catalog=catalog, problems=problems.frame(), rows_read=raw.attrs["rows_read"])


def ingest_metrics(result: IngestResult) -> dict:
    cat, prob = result.catalog, result.problems
    return {
        "rows_read": int(result.rows_read),
        "products": int(len(cat)),
        "quarantined": int(result.rows_read - len(cat)),
        "categories": int(cat["category"].nunique()),
        "per_class": {k: int(v) for k, v in cat["category"].value_counts().sort_index().items()},
        "per_split": {k: int(v) for k, v in cat["split"].value_counts().sort_index().items()},
        "images_ok": int((cat["image_status"] == OK).sum()),
        "problems_by_kind": {k: int(v) for k, v in prob["kind"].value_counts().sort_index().items()},
        "category_depth_max": int(cat["category_depth"].max()),
        "category_paths": int(cat["category_path"].nunique()),
        "with_specifications": int((cat["n_specifications"] > 0).sum()),
    }
