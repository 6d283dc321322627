"""Batch prediction from a CSV file (`python -m fkstudy predict --input products.csv --output out.csv`).

Input: a UTF-8 CSV with a header naming `name` and/or `description`, optionally `image` (a photo's path;
relative paths are taken from the CSV file's folder) and `id` (copied to the output). Any other column,
a column named twice, or neither text column is an error for the whole file (a typo such as
`descripton` would otherwise be silently ignored). Records may span several lines (quoted newlines).

Output: one row per product record, in input order: `line` (where the record starts in the CSV, the
header being line 1), `id` when the input has one, `category_1`, `probability_1`, ... `category_k`,
`probability_k`, `modality`, `note` and `error` ("" when predicted; else why, and no categories). A bad
row — both texts empty, more fields than the header, a photo missing or not an image — gets its error and
the others are still predicted. The file is written atomically (complete or not at all).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import files
from .model import ERROR_COLUMN, INPUT_COLUMNS, PredictInputError

PASSTHROUGH = ("id",)
KNOWN = (*INPUT_COLUMNS, *PASSTHROUGH)


@dataclass
class Products:
    frame: pd.DataFrame   # name, description, image ("" = absent; image paths resolved) and id when given
    lines: list[int]      # the CSV line each record starts on (header = line 1)
    errors: list[str]     # a problem found while reading the record ("" = none)
    has_id: bool


def _header(fields: list[str], path: Path) -> list[str]:
    names = [f.strip().lower() for f in fields]
    unknown = [f for f in names if f not in KNOWN]
    twice = sorted({f for f in names if names.count(f) > 1})
    expected = "expected name and/or description, optionally image and id"
    if unknown or twice:
        what = f"unknown column(s) {unknown}" if unknown else f"column(s) {twice} given twice"
        raise PredictInputError(f"{path.name}: {what} in the header; {expected}")
    if "name" not in names and "description" not in names:
        raise PredictInputError(f"{path.name}: no name or description column (header: {fields}); {expected}")
    return names


def read_products(path: str | Path) -> Products:
    """The products of a CSV file, with the line each starts on; whole-file problems raise PredictInputError."""
    from .records import records

    path = Path(path)
    if not path.is_file():
        raise PredictInputError(f"{path}: file not found")
    header, rows, lines, errors = None, [], [], []
    for rec in records(path):
        if header is None:
            header = _header(rec.fields, path)
            continue
        row, error = row_of(rec.fields, header)
        rows.append(row)
        lines.append(rec.line)
        errors.append(error)
    if header is None:
        raise PredictInputError(f"{path}: empty file (no header)")
    if not rows:
        raise PredictInputError(f"{path}: no product rows after the header")
    return products_from(rows, lines, errors, header, path)


def row_of(fields: list[str], header: list[str]) -> tuple[list[str], str]:
    """A record's fields fitted to the header (missing ones ""), and its problem ("" = none)."""
    error = ""
    if len(fields) > len(header):
        error = f"{len(fields)} fields, the header has {len(header)} (an unquoted comma?)"
    return (fields + [""] * len(header))[:len(header)], error


def products_from(rows: list[list[str]], lines: list[int], errors: list[str], header: list[str],
                  path: str | Path) -> Products:
    """Records (fitted by row_of) as Products: texts stripped, image paths relative to the CSV's folder resolved."""
    path = Path(path)
    raw = pd.DataFrame(rows, columns=header, dtype=object)
    frame = pd.DataFrame({c: raw[c].str.strip() if c in raw.columns else "" for c in INPUT_COLUMNS})
    frame["image"] = [str(path.parent / p) if p and not Path(p).is_absolute() else p for p in frame["image"]]
    for c in PASSTHROUGH:
        if c in raw.columns:
            frame[c] = raw[c]
    return Products(frame, list(lines), list(errors), "id" in raw.columns)


def predict_products(predictor, products: Products, top_k: int = 3, batch_size: int = 64,
                     progress: bool = False) -> pd.DataFrame:
    """Every readable record through the (already loaded) predictor, `batch_size` at a time, with a tqdm
    bar on stderr when `progress`; one output row per record."""
    from tqdm import tqdm

    from .model import output_columns

    frame, n = products.frame, len(products.frame)
    k = min(top_k, len(predictor.bundle.classes))
    cols = output_columns(k)
    out = pd.DataFrame({c: [np.nan] * n if c.startswith("probability_") else [False] * n if c == "confident"
                        else [""] * n for c in cols}).astype({c: object for c in cols if not c.startswith("probability_")})
    out[ERROR_COLUMN] = products.errors
    todo = np.flatnonzero(np.asarray(products.errors) == "")
    with tqdm(total=n, unit="product", desc="predict", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        bar.update(n - len(todo))
        for s in range(0, len(todo), batch_size):
            rows = todo[s:s + batch_size]
            part = predictor.predict(frame.iloc[rows][list(INPUT_COLUMNS)].reset_index(drop=True), top_k=k)
            out.iloc[rows, [out.columns.get_loc(c) for c in cols]] = part[cols].to_numpy(dtype=object)
            bar.update(len(rows))
    for c in cols:
        if c.startswith("probability_"):
            out[c] = pd.to_numeric(out[c])
    out["confident"] = out["confident"].astype(bool)
    head = pd.DataFrame({"line": products.lines})
    if products.has_id:
        head["id"] = frame["id"].to_numpy()
    return pd.concat([head, out], axis=1)


def write_predictions(out: pd.DataFrame, path: str | Path) -> None:
    """Atomically: a reader sees the previous file or the complete new one, never a part."""
    with files.atomic_path(path, keep_suffix=False) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6f")
