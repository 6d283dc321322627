"""Load and validate the Flipkart CSV into one catalog table keyed by product id.

Rows that cannot be used are *quarantined* (left out of the catalog, listed with
their reason); rows that are usable with a caveat are *flagged* (kept, listed).
Nothing is dropped silently. The stage fails only when what remains cannot
support the study (a required column missing, an expected class too small).
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StudyError

REQUIRED_COLUMNS = ("uniq_id", "product_name", "product_category_tree", "image", "description",
                    "product_specifications")
TEXT_COLUMNS = ("product_name", "description", "product_category_tree", "product_specifications", "brand")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
IMAGE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}\.(jpe?g|png|webp|bmp|gif|tiff?)$", re.IGNORECASE)
SPLITS = ("train", "val", "test")


class CatalogError(StudyError, ValueError):
    """The source data cannot support the study."""


@dataclass
class Problems:
    """Every problem found, one row each: file, row (1-based CSV data row), id, column, kind, action, detail."""

    rows: list[dict] = field(default_factory=list)

    def add(self, *, row: int | None, id: str | None, column: str, kind: str, action: str, detail: str,
            file: str = "") -> None:
        self.rows.append(dict(file=file, row=row, id=id, column=column, kind=kind, action=action,
                              detail=detail))

    def frame(self) -> pd.DataFrame:
        cols = ["file", "row", "id", "column", "kind", "action", "detail"]
        df = pd.DataFrame(self.rows, columns=cols)
        df["row"] = df["row"].astype("Int64")
        return df.sort_values(["row", "kind"], na_position="first", kind="stable").reset_index(drop=True)

    def quarantined_ids(self) -> set[str]:
        return {r["id"] for r in self.rows if r["action"] == "quarantined" and r["id"]}

    def quarantined_rows(self) -> set[int]:
        return {r["row"] for r in self.rows if r["action"] == "quarantined" and r["row"] is not None}


def read_csv_strict(path: Path, problems: Problems) -> pd.DataFrame:
    """Read the CSV as UTF-8; rows with undecodable bytes are quarantined, naming row and column."""
    if not path.exists():
        raise CatalogError(f"{path}: CSV not found (set data.raw_dir, or FLIPKART_DATA for the setup step)")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = raw.decode("utf-8", errors="surrogateescape")
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise CatalogError(f"{path}: not a readable CSV: {exc}") from None
    if not records:
        raise CatalogError(f"{path}: empty CSV")
    header = [h.strip() for h in records[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise CatalogError(f"{path}: missing required column(s) {missing}; found {header}")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise CatalogError(f"{path}: duplicated column name(s) {dupes}")
    rows, numbers = [], []
    for n, rec in enumerate(records[1:], start=1):
        if not any(cell.strip() for cell in rec):
            continue  # blank line
        if len(rec) != len(header):
            problems.add(file=path.name, row=n, id=_printable(rec[0]) if rec else None, column="*",
                         kind="bad_field_count", action="quarantined",
                         detail=f"{len(rec)} fields, header has {len(header)}")
            continue
        row = dict(zip(header, rec))
        bad_cols = [c for c, v in row.items() if _has_surrogates(v)]
        if bad_cols:
            for c in bad_cols:
                problems.add(file=path.name, row=n, id=_printable(row.get("uniq_id")), column=c,
                             kind="invalid_utf8", action="quarantined", detail="bytes that are not valid UTF-8")
            continue
        rows.append(row)
        numbers.append(n)
    df = pd.DataFrame(rows, columns=header)
    df.insert(0, "csv_row", pd.Series(numbers, dtype="int64"))
    df.attrs["rows_read"] = sum(1 for rec in records[1:] if any(cell.strip() for cell in rec))
    return df


def _has_surrogates(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _printable(s: str | None) -> str | None:
    """Undecodable bytes as \\xNN: lone surrogates cannot be stored in the problems frame nor written as UTF-8."""
    return None if s is None else s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def parse_category_tree(value: str) -> list[str]:
    """'["A >> B >> C"]' -> ['A', 'B', 'C']. Raises ValueError when it is not that shape."""
    value = (value or "").strip()
    if not value:
        raise ValueError("empty")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = [value.strip('[]"')]
    if isinstance(parsed, str):
        parsed = [parsed]
    if not isinstance(parsed, list) or not parsed or not isinstance(parsed[0], str):
        raise ValueError(f"not a list of paths: {value[:60]!r}")
    levels = [p.strip() for p in parsed[0].split(">>")]
    levels = [p for p in levels if p]
    if not levels:
        raise ValueError("no levels")
    return levels


_SPEC_PAIR = re.compile(r'\{\s*(?:"key"\s*=>\s*"(?P<key>(?:[^"\\]|\\.)*)"\s*,\s*)?"value"\s*=>\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*\}')


def parse_specifications(value: str) -> list[tuple[str | None, str]]:
    """The Ruby-hash specification string -> [(key or None, value)]. `nil` gives []."""
    if not value or "=>nil" in value.replace(" ", ""):
        return []
    return [(m.group("key"), m.group("value")) for m in _SPEC_PAIR.finditer(value)]


def top_specification_values(specs: pd.Series, top_keys: int, top_values: int) -> pd.DataFrame:
    """The seed's specification table: most frequent keys and, per key, their most frequent values."""
    pairs = [(k.strip(), v.strip()) for lst in specs for k, v in lst if k]
    if not pairs:
        return pd.DataFrame(columns=["key", "value", "count", "percentage", "total_occurrences"])
    df = pd.DataFrame(pairs, columns=["key", "value"])
    key_counts = df["key"].value_counts()
    out = []
    for key in key_counts.index[:top_keys]:
        vc = df.loc[df["key"] == key, "value"].value_counts()
        total = int(key_counts[key])
        for value, count in vc.iloc[:top_values].items():
            out.append(dict(key=key, value=value, count=int(count), percentage=round(100 * count / total, 2),
                            total_occurrences=total))
    return pd.DataFrame(out)


def stratified_split(ids: pd.Series, labels: pd.Series, fractions: dict, seed: int) -> pd.Series:
    """Seeded stratified train/val/test assignment (60/20/20 gives the seed's 630/210/210)."""
    from sklearn.model_selection import (
        train_test_split,  # here: load_catalog readers need no sklearn
    )

    ids = ids.reset_index(drop=True)
    labels = labels.reset_index(drop=True)
    test_size = fractions["test"]
    val_size = fractions["val"] / (fractions["train"] + fractions["val"])
    idx = np.arange(len(ids))
    rest, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=val_size, stratify=labels.iloc[rest], random_state=seed)
    split = np.empty(len(ids), dtype=object)
    split[train], split[val], split[test] = "train", "val", "test"
    return pd.Series(split, index=ids.index, name="split")


def build_catalog(df: pd.DataFrame, *, expected_categories: list[str], min_per_class: int,
                  problems: Problems, file: str = "") -> pd.DataFrame:
    """Validate rows (ids, text, category tree) and return the catalog columns (no split, no images yet)."""
    keep, out = [], []
    seen: dict[str, int] = {}
    for rec in df.to_dict("records"):
        n, pid = rec["csv_row"], (rec["uniq_id"] or "").strip()

        def q(column, kind, detail, _n=n, _pid=pid):
            problems.add(file=file, row=_n, id=_pid or None, column=column, kind=kind, action="quarantined",
                         detail=detail)

        if not pid:
            q("uniq_id", "missing_id", "empty product id")
            continue
        if not ID_PATTERN.match(pid):
            q("uniq_id", "bad_id", f"id {pid[:40]!r} is not [A-Za-z0-9_-]{{1,64}}")
            continue
        if pid in seen:
            q("uniq_id", "duplicate_id", f"same id as CSV row {seen[pid]}")
            continue
        seen[pid] = n
        name = (rec["product_name"] or "").strip()
        desc = (rec["description"] or "").strip()
        if not name and not desc:
            q("product_name", "empty_text", "no product name and no description")
            continue
        if not name:
            problems.add(file=file, row=n, id=pid, column="product_name", kind="empty_name", action="flagged",
                         detail="no product name; description kept")
        if not desc:
            problems.add(file=file, row=n, id=pid, column="description", kind="empty_description",
                         action="flagged", detail="no description; name kept")
        try:
            levels = parse_category_tree(rec["product_category_tree"])
        except ValueError as exc:
            q("product_category_tree", "bad_category_tree", str(exc))
            continue
        if expected_categories and levels[0] not in expected_categories:
            q("product_category_tree", "unknown_category", f"top level {levels[0]!r} not in data.categories")
            continue
        image = (rec["image"] or "").strip()
        if not IMAGE_NAME_PATTERN.match(image):
            problems.add(file=file, row=n, id=pid, column="image", kind="bad_image_name", action="flagged",
                         detail=f"image name {image[:60]!r} is not a plain image file name; text kept")
            image = ""
        specs = parse_specifications(rec["product_specifications"])
        out.append(dict(id=pid, csv_row=n, name=name, description=desc, brand=(rec.get("brand") or "").strip(),
                        category=levels[0], category_l2=levels[1] if len(levels) > 1 else "",
                        category_l3=levels[2] if len(levels) > 2 else "", category_path=" >> ".join(levels),
                        category_depth=len(levels), image=image,
                        n_specifications=len(specs),
                        specifications=json.dumps([[k, v] for k, v in specs], ensure_ascii=False)))
        keep.append(n)
    cat = pd.DataFrame(out)
    if cat.empty:
        raise CatalogError(f"{file}: no usable rows left after validation ({len(problems.rows)} problems)")
    counts = cat["category"].value_counts()
    wanted = expected_categories or sorted(counts.index)
    small = {c: int(counts.get(c, 0)) for c in wanted if counts.get(c, 0) < min_per_class}
    if small:
        raise CatalogError(f"{file}: class(es) below data.min_per_class={min_per_class} after validation: {small}")
    return cat


# ----------------------------------------------------------------------------- reading it back
CATALOG_COLUMNS = ("id", "name", "description", "category", "image", "image_status", "split")
STRING_COLUMNS = ("id", "name", "description", "category", "image", "image_status", "split")


def load_catalog(path: str | Path, features: dict | None = None) -> pd.DataFrame:
    """The catalog written by `ingest`, validated: every later stage reads it through here.

    Checks: the file exists and is a parquet table; the columns the stages use are present and
    hold strings; ids are non-empty and unique; `split` is one of train/val/test and each split
    has rows; categories are non-empty and each has train rows. `features` maps a feature or
    cache file to its ids: every one of them must be a catalog id (a file from another ingest
    run is refused instead of being joined silently). Errors are CatalogError naming the file,
    the column and the first offending rows (0-based parquet row, with the id).
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalog not found (run the ingest stage first: `dvc repro ingest`)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow's errors for a truncated / non-parquet file
        raise CatalogError(f"{path}: not a readable parquet catalog ({type(exc).__name__}: {exc})") from None
    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    if df.empty:
        raise CatalogError(f"{path}: the catalog has no rows")
    df = df.reset_index(drop=True)
    for col in STRING_COLUMNS:
        bad = [i for i, v in enumerate(df[col].tolist()) if not isinstance(v, str)]
        if bad:
            raise CatalogError(f"{path}: column '{col}' must hold strings; {_rows(df, bad, col)}")
    for col in ("id", "category"):
        bad = df.index[df[col].str.strip() == ""].tolist()
        if bad:
            raise CatalogError(f"{path}: empty '{col}' in {_rows(df, bad, col)}")
    dup = df.index[df["id"].duplicated(keep=False)].tolist()
    if dup:
        raise CatalogError(f"{path}: duplicate ids in {_rows(df, dup, 'id')}")
    bad = df.index[~df["split"].isin(SPLITS)].tolist()
    if bad:
        raise CatalogError(f"{path}: column 'split' must be one of {list(SPLITS)}; {_rows(df, bad, 'split')}")
    empty = [s for s in SPLITS if not (df["split"] == s).any()]
    if empty:
        raise CatalogError(f"{path}: split(s) {empty} have no rows")
    no_train = sorted(set(df["category"]) - set(df.loc[df["split"] == "train", "category"]))
    if no_train:
        raise CatalogError(f"{path}: categories with no train row (nothing to fit them on): {no_train}")
    known = set(df["id"])
    for where, ids in (features or {}).items():
        unknown = [str(i) for i in ids if str(i) not in known]
        if unknown:
            raise CatalogError(f"{where}: {len(unknown)} of {len(ids)} ids are not in the catalog {path}, e.g. "
                               f"{unknown[:3]} (written from another ingest run? re-run its stage)")
    return df


def _rows(df: pd.DataFrame, rows: list[int], col: str, show: int = 3) -> str:
    shown = ", ".join(f"row {i} (id {df.at[i, 'id']!r}): {df.at[i, col]!r}" for i in rows[:show])
    more = f" and {len(rows) - show} more" if len(rows) > show else ""
    return f"{len(rows)} bad row(s): {shown}{more}"
