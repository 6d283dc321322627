"""fkstudy.data.splits: rows grouped by the catalog split (joined on id), the no-test guard, common ids."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fkstudy.data.splits import LeakError, assert_no_test, common_ids, split_by_id, split_ids
from fkstudy.errors import StudyError
from fkstudy.files import FeatureFileError, align


@pytest.fixture(scope="module")
def catalog():
    ids = np.array([f"p{i:02d}" for i in range(12)])
    split = np.array(["train", "val", "test"] * 4)
    return pd.DataFrame({"id": ids, "category": np.array(["a", "b"] * 6), "split": split})


def test_split_by_id_joins_on_id_and_skips_rows_without_features(catalog):
    rng = np.random.default_rng(0)
    order = rng.permutation(12)[:-1]          # one product has no feature row; the file order is shuffled
    ids = catalog["id"].to_numpy()[order]
    X = np.array([[int(i[1:])] for i in ids], dtype=np.float32)  # each row carries its product number
    d = split_by_id(X, ids, catalog)
    missing = set(catalog["id"]) - set(ids)
    for part in ("train", "val", "test"):
        got = getattr(d, f"ids_{part}")
        want = catalog.loc[(catalog["split"] == part) & ~catalog["id"].isin(missing), "id"]
        assert list(got) == list(want)  # catalog order
        np.testing.assert_array_equal(getattr(d, f"X_{part}")[:, 0], [int(i[1:]) for i in got])
        assert list(getattr(d, f"y_{part}")) == list(catalog.set_index("id").loc[got, "category"])
    assert len(d.ids_train) + len(d.ids_val) + len(d.ids_test) == 11


def test_assert_no_test_refuses_leaks(catalog):
    cat = catalog
    test_id = cat.loc[cat["split"] == "test", "id"].iloc[0]
    train_ids = list(cat.loc[cat["split"] == "train", "id"])
    assert_no_test(train_ids, cat)
    with pytest.raises(LeakError, match="test"):
        assert_no_test(train_ids + [test_id], cat)
    with pytest.raises(LeakError):
        assert_no_test(train_ids, cat, allowed=("train", "test"))
    with pytest.raises(LeakError):
        assert_no_test(["not-in-catalog"], cat)
    assert issubclass(LeakError, StudyError)


def test_common_ids_keep_catalog_order(catalog):
    a = ["p05", "p01", "p03", "p07"]
    b = np.array(["p07", "p03", "p09", "p05"])
    assert list(common_ids(catalog, a, b)) == ["p03", "p05", "p07"]
    assert list(common_ids(catalog)) == list(catalog["id"])


def test_split_ids(catalog):
    assert split_ids(catalog, "train") == frozenset(catalog.loc[catalog["split"] == "train", "id"])
    assert split_ids(catalog, "nope") == frozenset()


def test_feature_rows_outside_the_catalog_are_ignored_and_a_missing_id_is_an_error(catalog):
    X = np.zeros((13, 2), np.float32)
    ids = np.append(catalog["id"].to_numpy(), "stranger")
    d = split_by_id(X, ids, catalog)
    assert "stranger" not in set(d.ids_train) | set(d.ids_val) | set(d.ids_test)
    assert len(d.ids_train) + len(d.ids_val) + len(d.ids_test) == 12
    with pytest.raises(FeatureFileError, match="absent"):
        align(X, ids, ["p00", "absent"])
