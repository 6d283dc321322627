"""The train / val / test split as seen by a fit: rows of a feature file grouped by split (joined on id,
never on row order) and the guard that no test id ever enters a fit."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import StudyError
from ..files import align


class LeakError(StudyError, AssertionError):
    """A test id (or a row not in the allowed split) was about to enter a fit call."""


@dataclass
class Splits:
    ids_train: np.ndarray
    X_train: np.ndarray
    y_train: np.ndarray
    ids_val: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    ids_test: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def split_by_id(X, ids, catalog: pd.DataFrame) -> Splits:
    """Rows of a feature file grouped by the catalog split, joined on id (never row order).

    Catalog ids without a feature row (e.g. products with no photo) are left out of every split.
    """
    have = set(np.asarray(ids).tolist())
    parts = {}
    for name in ("train", "val", "test"):
        sub = catalog[(catalog["split"] == name) & catalog["id"].isin(have)]
        parts[name] = (sub["id"].to_numpy(), align(np.asarray(X), np.asarray(ids), sub["id"].to_numpy()),
                       sub["category"].to_numpy())
    return Splits(*parts["train"], *parts["val"], *parts["test"])


def assert_no_test(fit_ids, catalog: pd.DataFrame, allowed=("train",)) -> None:
    """Raise LeakError if any id about to be fitted on is not in an allowed split (never 'test')."""
    if "test" in allowed:
        raise LeakError("'test' can never be an allowed fit split")
    split = dict(zip(catalog["id"], catalog["split"]))
    bad = [i for i in np.asarray(fit_ids).tolist() if split.get(i) not in allowed]
    if bad:
        raise LeakError(f"{len(bad)} ids outside {list(allowed)} would enter a fit, e.g. {bad[:3]} "
                        f"(splits {sorted({str(split.get(i)) for i in bad})})")


def common_ids(catalog: pd.DataFrame, *id_arrays) -> np.ndarray:
    """Catalog ids (catalog order) present in every feature file."""
    keep = catalog["id"].to_numpy()
    for ids in id_arrays:
        keep = keep[np.isin(keep, np.asarray(ids))]
    return keep


def split_ids(catalog: pd.DataFrame, split: str) -> frozenset:
    """The ids of one split (e.g. the train ids a learned representation may be fitted on)."""
    return frozenset(catalog.loc[catalog["split"] == split, "id"])
