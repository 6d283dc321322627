"""Atomic writes, the one feature-file format every extractor shares, and the id -> row join.

A feature file is an `.npz` holding
  X    float32 [n, d]   one row per product
  ids  unicode [n]      the catalog `id` of each row (joins are on id, never on order)
  meta unicode scalar   JSON: extractor name, params, weights source, ...
and is loaded with allow_pickle=False.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .errors import StudyError


class FeatureFileError(StudyError, ValueError):
    """A feature file is missing, malformed or does not match the catalog."""


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename onto `path` only if the block succeeds.

    A stage killed half-way leaves the previous file (or none), never a truncated one. A
    SIGKILL skips the clean-up and leaves the hidden temporary file: with keep_suffix=False
    its name ends in `.tmp`, so no reader globbing `*.json`/`*.npz` can pick it up; keep the
    suffix only for writers that need it (Keras' `save` wants `.keras` / `.weights.h5`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + ("".join(path.suffixes) if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path, keep_suffix=False) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "model_dump"):  # a params section (pydantic)
        return o.model_dump()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    with atomic_path(path, keep_suffix=False) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def write_parquet(path: str | os.PathLike, df: pd.DataFrame) -> None:
    with atomic_path(path, keep_suffix=False) as tmp:
        df.to_parquet(tmp, index=False)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path, keep_suffix=False) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png",
                    metadata={"Software": None} if path.suffix == ".png" else None)
    plt.close(fig)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """An uncompressed .npz readable by np.load, written atomically and byte-for-byte reproducibly.

    np.savez stamps the current time into each zip entry, so identical arrays give a new file hash
    on every run and DVC re-runs everything downstream; here every entry gets a fixed timestamp.
    """
    with atomic_path(path, keep_suffix=False) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def reproducible_zip(data: bytes, edit=None) -> bytes:
    """A zip archive rewritten so the same content gives the same bytes: every entry stamped FIXED_ZIP_TIME with
    mode 0644, in the original order and compression. `edit(name, content) -> (name, content)` may rewrite
    entries first (e.g. drop a save date). Used for the model archives (Keras .keras, skops), whose writers
    stamp the current time and process-specific ids: DVC would see a new hash for an unchanged model."""
    import io

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", allowZip64=True) as dst:
        for info in src.infolist():
            name, content = info.filename, src.read(info)
            if edit is not None:
                name, content = edit(name, content)
            fixed = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            fixed.compress_type, fixed.external_attr = info.compress_type, 0o644 << 16
            dst.writestr(fixed, content)
    return out.getvalue()


def save_keras(model, path: str | os.PathLike) -> None:
    """A Keras model saved atomically as a byte-reproducible .keras archive: Keras stamps `date_saved` into its
    metadata.json, the current time into the weights entry and Python object ids (`"shared_object_id"`, which
    link the uses of one shared object) into config.json; the date and times are fixed here and the ids renumbered
    in order of first appearance (the same object keeps one number, so loading links them as before)."""
    import re

    def undated(name: str, content: bytes) -> tuple[str, bytes]:
        if name == "metadata.json":
            meta = json.loads(content)
            meta["date_saved"] = "1980-01-01@00:00:00"
            content = json.dumps(meta).encode()
        elif name == "config.json":
            numbers: dict[str, str] = {}
            content = re.sub(rb'("shared_object_id":\s*)(\d+)', lambda m: m.group(1) + numbers.setdefault(
                m.group(2), str(len(numbers))).encode(), content)
        return name, content

    with atomic_path(path) as tmp:
        model.save(tmp)
        tmp.write_bytes(reproducible_zip(tmp.read_bytes(), undated))


def save_features(path: str | os.PathLike, X: np.ndarray, ids, meta: dict, **arrays: np.ndarray) -> None:
    """X [n, d] float32 with its ids and meta; `arrays`: side arrays of n float32 rows each stored beside them
    (e.g. a backbone's `activations` at an inner layer), read by name with load_npz and ignored by
    load_features."""
    X = np.asarray(X, dtype=np.float32)
    ids = np.asarray([str(i) for i in ids])
    _check_features(X, ids, str(path))
    for name, a in arrays.items():
        if name in ("X", "ids", "meta") or a.dtype != np.float32 or len(a) != len(X):
            raise FeatureFileError(f"{path}: side array {name!r} must be float32 with {len(X)} rows and not be "
                                   f"named X, ids or meta (got {a.dtype} {a.shape})")
    save_npz(path, X=X, ids=ids, meta=np.asarray(json.dumps(meta, sort_keys=True, default=_json_default)), **arrays)


def npz_names(path: str | os.PathLike) -> list[str]:
    """The array names an .npz holds (its zip directory only: no array is read)."""
    with zipfile.ZipFile(path) as zf:
        return [n.removesuffix(".npy") for n in zf.namelist()]


def _check_features(X: np.ndarray, ids: np.ndarray, where: str) -> None:
    if X.ndim != 2:
        raise FeatureFileError(f"{where}: X must be 2-D [n, d], got shape {X.shape}")
    if X.dtype != np.float32:
        raise FeatureFileError(f"{where}: X must be float32, got {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise FeatureFileError(f"{where}: X is empty (shape {X.shape}); no stage can use it")
    if ids.ndim != 1 or len(ids) != X.shape[0]:
        raise FeatureFileError(f"{where}: {len(ids)} ids for {X.shape[0]} rows of X")
    if len(set(ids.tolist())) != len(ids):
        raise FeatureFileError(f"{where}: duplicate ids")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise FeatureFileError(f"{where}: {bad} rows of X contain NaN/inf")


def load_npz(path: str | os.PathLike, arrays: tuple[str, ...], what: str, producer: str):
    """Arrays `arrays` (the last one, `meta`, decoded from JSON) of an .npz written by this pipeline.

    allow_pickle=False; a missing file, missing array, zip/format error or bad JSON is a
    FeatureFileError naming the file and `what` it should have been.
    """
    path = Path(path)
    if not path.exists():
        raise FeatureFileError(f"{path}: {what} not found (run {producer} first)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = sorted(set(arrays) - set(z.files))
            if missing:
                article = "an" if what[0] in "aeiou" else "a"
                raise FeatureFileError(f"{path}: not {article} {what}, missing arrays {missing}")
            *data, meta = (z[a] for a in arrays)
            meta = json.loads(str(meta))
    except FeatureFileError:
        raise
    except Exception as exc:  # zip / format / pickle-refused errors from numpy, bad JSON
        raise FeatureFileError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise FeatureFileError(f"{path}: meta must be a JSON object, got {type(meta).__name__}")
    return (*data, meta)


def load_features(path: str | os.PathLike, supervised: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """(X, ids, meta) of a feature file, checked.

    supervised=True is for stages that report a test-set metric from these features: a file
    whose learned step (vocabulary, idf, Word2Vec, codebook) was fitted on every row
    (meta `fit_on` other than "train", e.g. `text_features.fit_on: all`) has seen the test
    rows, so it is refused instead of giving a leaked test score.
    """
    X, ids, meta = load_npz(path, ("X", "ids", "meta"), "feature file", "its extractor stage")
    if ids.dtype.kind != "U":
        raise FeatureFileError(f"{path}: ids must be strings, got dtype {ids.dtype}")
    _check_features(X, ids, str(path))
    if supervised and meta.get("fit_on", "train") != "train":
        raise FeatureFileError(
            f"{path}: fitted on {meta['fit_on']!r} rows, test rows included, so a test metric from it would "
            f"leak; supervised stages need features fitted on train ids only (set text_features.fit_on: train)")
    return X, ids, meta


def row_index(ids, wanted, where: str = "features") -> np.ndarray:
    """Positions in `ids` of each id in `wanted` (the one id -> row join; never row order).
    Every wanted id must be present."""
    index = {k: i for i, k in enumerate(np.asarray(ids).tolist())}
    wanted = np.asarray(wanted).tolist()
    missing = [c for c in wanted if c not in index]
    if missing:
        raise FeatureFileError(f"{where}: {len(missing)} catalog ids have no feature row, e.g. {missing[:3]}")
    return np.fromiter((index[c] for c in wanted), dtype=np.int64, count=len(wanted))


def align(X: np.ndarray, ids: np.ndarray, catalog_ids, where: str = "features") -> np.ndarray:
    """Rows of X reordered to `catalog_ids`. Every requested id must be present."""
    return np.asarray(X)[row_index(ids, catalog_ids, where)]
