"""The shared feature-file format and atomic writes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fkstudy.files import (FeatureFileError, align, atomic_path, load_features, row_index, save_features,
                           write_json)


def _touch(path: str) -> str:  # called only if something unpickles the payload below
    Path(path).write_text("unpickled")
    return path


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 3)).astype(np.float32), [f"id{i}" for i in (4, 2, 0, 3, 1)]


def test_round_trip(tmp_path, feats):
    X, ids = feats
    path = tmp_path / "f.npz"
    save_features(path, X, ids, {"extractor": "bow", "vocab": 3, "n": np.int64(5), "w": np.float32(0.5)})
    X2, ids2, meta = load_features(path)
    assert X2.dtype == np.float32 and X2.shape == (5, 3)
    np.testing.assert_array_equal(X2, X)
    assert ids2.dtype.kind == "U" and ids2.tolist() == ids
    assert meta == {"extractor": "bow", "vocab": 3, "n": 5, "w": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]  # no temp file left


def test_save_casts_to_float32_and_ids_to_str(tmp_path):
    save_features(tmp_path / "f.npz", np.ones((2, 2), dtype=np.float64), [10, 11], {})
    X, ids, _ = load_features(tmp_path / "f.npz")
    assert X.dtype == np.float32 and ids.tolist() == ["10", "11"]


@pytest.mark.parametrize("X, ids, message", [
    (np.ones(3, np.float32), ["a", "b", "c"], "must be 2-D"),
    (np.ones((3, 2), np.float32), ["a", "b"], "2 ids for 3 rows"),
    (np.ones((3, 2), np.float32), ["a", "b", "a"], "duplicate ids"),
    (np.array([[1, 2], [np.nan, 0], [np.inf, 1]], np.float32), ["a", "b", "c"], "2 rows of X contain NaN/inf"),
])
def test_save_refuses_bad_features_and_writes_nothing(tmp_path, X, ids, message):
    with pytest.raises(FeatureFileError, match=message):
        save_features(tmp_path / "f.npz", X, ids, {})
    assert list(tmp_path.iterdir()) == []


def _raw_npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


META = np.asarray(json.dumps({"extractor": "x"}))


@pytest.mark.parametrize("arrays, message", [
    (dict(X=np.ones((2, 2), np.float64), ids=np.array(["a", "b"]), meta=META), "X must be float32, got float64"),
    (dict(X=np.ones(2, np.float32), ids=np.array(["a", "b"]), meta=META), "X must be 2-D"),
    (dict(X=np.ones((3, 2), np.float32), ids=np.array(["a", "b"]), meta=META), "2 ids for 3 rows"),
    (dict(X=np.ones((2, 2), np.float32), ids=np.array(["a", "a"]), meta=META), "duplicate ids"),
    (dict(X=np.array([[1, np.nan], [0, 0]], np.float32), ids=np.array(["a", "b"]), meta=META),
     "1 rows of X contain NaN"),
    (dict(X=np.ones((2, 2), np.float32), ids=np.array([1, 2]), meta=META), "ids must be strings"),
    (dict(X=np.ones((2, 2), np.float32), ids=np.array(["a", "b"])), r"not a feature file, missing arrays \['meta'\]"),
])
def test_load_rejects_malformed_files(tmp_path, arrays, message):
    path = _raw_npz(tmp_path / "f.npz", **arrays)
    with pytest.raises(FeatureFileError, match=message) as exc:
        load_features(path)
    assert str(path) in str(exc.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(FeatureFileError, match="feature file not found"):
        load_features(tmp_path / "absent.npz")


def test_load_never_unpickles(tmp_path):
    marker = tmp_path / "unpickled.txt"
    ids = np.empty(2, dtype=object)
    ids[:] = [_Evil(str(marker)), "b"]
    path = _raw_npz(tmp_path / "f.npz", X=np.ones((2, 2), np.float32), ids=ids, meta=META)
    with pytest.raises(FeatureFileError, match="unreadable feature file"):
        load_features(path)
    assert not marker.exists()
    # and the payload really is live: numpy with pickles allowed would have run it
    with np.load(path, allow_pickle=True) as z:
        z["ids"]
    assert marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04 truncated zip"])
def test_load_corrupt_file(tmp_path, content):
    path = tmp_path / "f.npz"
    path.write_bytes(content)
    with pytest.raises(FeatureFileError, match="unreadable feature file"):
        load_features(path)


def test_load_truncated_npz(tmp_path, feats):
    X, ids = feats
    save_features(tmp_path / "f.npz", X, ids, {})
    data = (tmp_path / "f.npz").read_bytes()
    (tmp_path / "f.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureFileError):
        load_features(tmp_path / "f.npz")


def test_align_reorders_by_id(feats):
    X, ids = feats
    ids = np.asarray(ids)
    want = ["id0", "id1", "id2", "id3", "id4"]
    Y = align(X, ids, want)
    for k, pid in enumerate(want):
        np.testing.assert_array_equal(Y[k], X[ids.tolist().index(pid)])
    np.testing.assert_array_equal(align(X, ids, ["id3"]), X[[3]])  # subsets are fine


def test_align_missing_ids(feats):
    X, ids = feats
    with pytest.raises(FeatureFileError, match=r"bow.npz: 2 catalog ids have no feature row.*'id9'"):
        align(X, np.asarray(ids), ["id0", "id9", "id8"], where="bow.npz")


def test_row_index_is_the_id_join(feats):
    _, ids = feats  # id4, id2, id0, id3, id1
    idx = row_index(ids, ["id0", "id1", "id4"])
    assert idx.dtype == np.int64 and idx.tolist() == [2, 4, 0]
    assert row_index(ids, []).tolist() == []
    with pytest.raises(FeatureFileError, match=r"text_bow.npz: 1 catalog ids have no feature row, e.g. \['id7'\]"):
        row_index(ids, ["id0", "id7"], where="text_bow.npz")


def test_atomic_path_success_replaces(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json(target, {"b": np.int64(2), "a": np.float32(0.5), "c": np.arange(2)})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": 2, "c": [0, 1]}
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(target.parent) == ["out.json"]


def test_atomic_path_failure_leaves_no_file(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            assert tmp != target and tmp.parent == tmp_path and tmp.exists()
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise KeyboardInterrupt
    assert target.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [target]


def test_write_json_unserialisable_keeps_previous(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"a": 1})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1} and len(list(tmp_path.iterdir())) == 1


def _archive_in_a_new_process(kind: str, out: Path) -> bytes:
    """A model archive written by a fresh interpreter (another PYTHONHASHSEED, other object ids, another time)."""
    import subprocess
    import sys

    code = f"""
import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / 'src')!r})
import numpy as np
from fkstudy import files
if {kind!r} == "skops":
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from fkstudy.predict.bundle import canonical_skops
    X = np.random.default_rng(0).normal(size=(60, 4)); y = (X[:, 0] > 0).astype(int)
    m = Pipeline([("s", StandardScaler()), ("c", LogisticRegression())]).fit(X, y)
    open({str(out)!r}, "wb").write(canonical_skops(sio.dumps(m)))
else:
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    files.save_keras(model, {str(out)!r})
    x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    again = keras.models.load_model({str(out)!r})   # the renumbered shared-object ids still load
    assert np.array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300,
                   env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
    return out.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["skops", "keras"])
def test_model_archives_are_byte_reproducible(tmp_path, kind):
    """Keras stamps a save date and zip times, skops names arrays after object ids: rewritten, the same model gives
    the same bytes in another process at another time, so DVC sees no change (dvc.lock stays as committed)."""
    import time

    suffix = ".keras" if kind == "keras" else ".skops"
    first = _archive_in_a_new_process(kind, tmp_path / f"a{suffix}")
    time.sleep(2)  # zip times have a 2 s resolution
    second = _archive_in_a_new_process(kind, tmp_path / f"b{suffix}")
    assert first == second
    import io
    import zipfile

    from fkstudy.files import FIXED_ZIP_TIME

    with zipfile.ZipFile(io.BytesIO(first)) as z:
        assert {i.date_time for i in z.infolist()} == {FIXED_ZIP_TIME}
