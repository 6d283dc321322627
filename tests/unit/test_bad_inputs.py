"""Bad input at every stage boundary gives a clear error naming the file / column / row / key.

Complements test_ingest (raw CSV + photos), test_files (feature-file shape/dtype/ids), test_params
(params types/ranges/typos) and test_image_preprocess (image cache, decoding): here the catalog
every stage reads, what those tests leave out at the other boundaries (empty features, bad meta,
odd YAML, corrupt weights files, empty / missing image folders, no train rows) and, at the end,
real stage processes fed bad input: they exit 2 with one line `error: <the problem>` on stderr and no
traceback, and (with FKSTUDY_TRACEBACK=1) the innermost frame is our own check, not a library's internals.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fkstudy import files, paths
from fkstudy.data.catalog import CatalogError, load_catalog
from fkstudy.errors import StudyError
from fkstudy.image import weights as W
from fkstudy.image.cache import load_image_cache
from fkstudy.image.registry import weight_spec
from fkstudy.params import ParamsError, _UniqueKeyLoader, load_params
from fkstudy.registry import Context
from fkstudy.text import features as F
from fkstudy.text.registry import BowParams, Word2VecParams

ROOT = Path(__file__).resolve().parents[2]


def catalog(n: int = 15) -> pd.DataFrame:
    ids = [f"p{i:02d}" for i in range(n)]
    return pd.DataFrame({"id": ids, "csv_row": range(1, n + 1), "name": [f"name {i}" for i in ids],
                         "description": "a product", "category": ["Watches", "Baby Care", "Computers"] * (n // 3),
                         "image": [f"{i}.jpg" for i in ids], "image_status": "ok",
                         "split": (["train"] * 3 + ["val"] * 3 + ["test"] * 3 + ["train"] * 6)[:n]})


def _write(tmp_path, df: pd.DataFrame) -> Path:
    path = tmp_path / "catalog.parquet"
    df.to_parquet(path, index=False)
    return path


def _set(df: pd.DataFrame, row: int, col: str, value) -> pd.DataFrame:
    df = df.copy()
    if value is None:
        df[col] = df[col].astype(object)
    df.at[row, col] = value
    return df


# ------------------------------------------------------------------------------ the catalog
def test_valid_catalog_loads_and_the_real_one_too(tmp_path):
    df = load_catalog(_write(tmp_path, catalog()))
    assert len(df) == 15 and set(df["split"]) == {"train", "val", "test"}
    real = ROOT / "data/interim/catalog.parquet"
    if real.exists():  # present once ingest has run
        assert load_catalog(real)["id"].is_unique


CATALOG_CASES = {
    "unknown split": (lambda d: _set(d, 4, "split", "holdout"),
                      r"column 'split' must be one of \['train', 'val', 'test'\]; 1 bad row\(s\): row 4 \(id 'p04'\): 'holdout'"),
    "split with wrong case": (lambda d: _set(d, 0, "split", "Train"), r"row 0 \(id 'p00'\): 'Train'"),
    "missing split value": (lambda d: _set(d, 2, "split", None), r"column 'split' must hold strings; .*row 2 \(id 'p02'\)"),
    "missing column": (lambda d: d.drop(columns=["split"]), r"missing column\(s\) \['split'\]"),
    "duplicate id": (lambda d: _set(d, 7, "id", "p03"), r"duplicate ids in 2 bad row\(s\): row 3 \(id 'p03'\).*row 7"),
    "empty id": (lambda d: _set(d, 5, "id", "  "), r"empty 'id' in 1 bad row\(s\): row 5"),
    "numeric ids": (lambda d: d.assign(id=range(len(d))), r"column 'id' must hold strings; 15 bad row\(s\): row 0"),
    "empty category": (lambda d: _set(d, 1, "category", ""), r"empty 'category' in 1 bad row\(s\): row 1 \(id 'p01'\)"),
    "no rows": (lambda d: d.iloc[:0], r"the catalog has no rows"),
    "a split with no rows": (lambda d: d.assign(split=d["split"].replace("test", "val")), r"split\(s\) \['test'\] have no rows"),
    "category with no train row": (lambda d: d.assign(category=np.where(d["split"] == "test", "Toys", d["category"])),
                                   r"categories with no train row .*\['Toys'\]"),
}


@pytest.mark.parametrize("case", list(CATALOG_CASES))
def test_bad_catalog_is_refused_naming_file_column_and_row(tmp_path, case):
    change, message = CATALOG_CASES[case]
    path = _write(tmp_path, change(catalog()))
    with pytest.raises(CatalogError, match=message) as err:
        load_catalog(path)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize("content, message", [
    (None, r"catalog not found \(run the ingest stage first"),
    (b"", r"not a readable parquet catalog"),
    (b"id,category,split\np1,Watches,train\n", r"not a readable parquet catalog"),
    ("truncated", r"not a readable parquet catalog"),
])
def test_missing_or_unreadable_catalog_file(tmp_path, content, message):
    path = tmp_path / "catalog.parquet"
    if content == "truncated":
        data = _write(tmp_path, catalog()).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)


def test_feature_ids_must_all_be_catalog_ids(tmp_path):
    path = _write(tmp_path, catalog())
    load_catalog(path, features={"f.npz": ["p00", "p03"]})  # a subset (e.g. products with a photo) is fine
    with pytest.raises(CatalogError, match=r"other.npz: 2 of 3 ids are not in the catalog .*\['q1', 'q2'\]"):
        load_catalog(path, features={"f.npz": ["p00"], "other.npz": ["p01", "q1", "q2"]})


# ------------------------------------------------------------------------------ feature files, image cache
def _raw_npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


@pytest.mark.parametrize("arrays, message", [
    (dict(X=np.ones((0, 4), np.float32), ids=np.array([], dtype="<U1")), r"X is empty \(shape \(0, 4\)\)"),
    (dict(X=np.ones((2, 0), np.float32), ids=np.array(["a", "b"])), r"X is empty \(shape \(2, 0\)\)"),
    (dict(X=np.ones((2, 2), np.float32), ids=np.array(["a", "b"]), meta=np.asarray("[1, 2]")),
     "meta must be a JSON object, got list"),
    (dict(X=np.ones((2, 2), np.float32), ids=np.array(["a", "b"]), meta=np.asarray("{'not': json}")),
     r"unreadable feature file \(JSONDecodeError"),
    (dict(X=np.ones((2, 2), np.float32), ids=np.array([["a", "b"]])), r"1 ids for 2 rows"),
])
def test_feature_file_boundaries_not_covered_by_test_files(tmp_path, arrays, message):
    arrays.setdefault("meta", np.asarray("{}"))
    path = _raw_npz(tmp_path / "feats.npz", **arrays)
    with pytest.raises(files.FeatureFileError, match=message) as err:
        files.load_features(path)
    assert "feats.npz" in str(err.value)


def test_save_features_refuses_empty_output(tmp_path):
    with pytest.raises(files.FeatureFileError, match="X is empty"):
        files.save_features(tmp_path / "f.npz", np.zeros((0, 3), np.float32), [], {})
    assert not (tmp_path / "f.npz").exists()


def test_image_cache_without_images(tmp_path):
    path = _raw_npz(tmp_path / "images.npz", images=np.zeros((0, 8, 8, 3), np.uint8), ids=np.array([], dtype="<U1"),
                    meta=np.asarray("{}"))
    with pytest.raises(files.FeatureFileError, match=r"images.npz: the image cache holds no usable image"):
        load_image_cache(path)


# ------------------------------------------------------------------------------ params.yaml
@pytest.fixture(scope="module")
def real_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _params_file(tmp_path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("tsne_perplexity: 30", "tsne_perplexity: .nan"),
     r"'cluster\.tsne_perplexity' must be a finite number, got nan"),
    (lambda t: t.replace("max_df: 1.0, ngram_max: 1, max_features: 5000, sublinear_tf", "max_df: .inf, ngram_max: 1, "
                         "max_features: 5000, sublinear_tf"), r"'text_features\.tfidf\.max_df' must be a finite number"),
    (lambda t: t.replace("tsne_perplexity: 30", "tsne_perplexity: '30'"),
     r"'cluster\.tsne_perplexity' must be float, got '30' \(str\) — a number in quotes"),
    (lambda t: t.replace("seed: 42", "seed: 42\nseed: 7"), r"(?s)not valid YAML: .*duplicate key 'seed' \(first at line \d+\)"),
    (lambda t: t + "\n1: one\n", r"unknown key\(s\) \['1'\]"),
    (lambda t: t + "\nyes: true\n", r"unknown key\(s\) \['True'\]"),
    (lambda t: "- seed\n- n_jobs\n", r"params: the top level must be a mapping, got \['seed', 'n_jobs'\]"),
    (lambda t: t + "\n[a, b]: 1\n", r"(?s)not valid YAML: .*unhashable key"),
])
def test_params_file_boundaries_not_covered_by_test_params(tmp_path, edit, message):
    text = (ROOT / "params.yaml").read_text()
    assert edit(text) != text
    with pytest.raises(ParamsError, match=message):
        load_params(_params_file(tmp_path, edit(text)))


def test_floats_read_as_dvc_writes_them(tmp_path):
    """`dvc exp run -S` writes the value it sets with Python's float repr (YAML 1.2, ruamel): `2e-05`, which YAML 1.1
    (PyYAML) reads as a string. It is a float here, as in DVC; a quoted number stays refused (the test above)."""
    from dvc.utils.hydra import apply_overrides

    path = _params_file(tmp_path, (ROOT / "params.yaml").read_text())
    apply_overrides(str(path), ["fine_tune_text.lr=0.00002", "cluster.tsne_perplexity=3e1"])
    assert "  lr: 2e-05 " in path.read_text() and "  tsne_perplexity: 30.0\n" in path.read_text()
    p = load_params(path)
    assert p.fine_tune_text.lr == 2e-05 and p.cluster.tsne_perplexity == 30.0


def test_params_file_not_utf8(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes((ROOT / "params.yaml").read_bytes().replace(b"seed: 42", b"seed: 42 # caf\xe9"))
    with pytest.raises(ParamsError, match=r"params.yaml: not UTF-8 text"):
        load_params(path)


def test_merge_keys_may_override_and_real_params_still_load(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    load_params(_params_file(tmp_path, text))
    merged = yaml.load("a: &x {b: 1}\nc:\n  <<: *x\n  b: 2\n", Loader=_UniqueKeyLoader)
    assert merged == {"a": {"b": 1}, "c": {"b": 2}}


# ------------------------------------------------------------------------------ weights files
def _toy_spec(framework="torch") -> W.WeightSpec:
    return W.WeightSpec(model="toy", label="imagenet", framework=framework, local_names=("toy.bin",),
                        cache_files=lambda: [], url="", how_to="copy toy.bin into weights/.")


def _load(spec, local, from_file):
    return W.load_with_fallback(spec, local, allow_random_init=True, allow_download=False, from_file=from_file,
                                download=None, random_init=lambda: pytest.fail("a corrupt file must not fall back"))


def test_empty_weights_file_is_an_error_not_a_random_init(tmp_path):
    (tmp_path / "toy.bin").write_bytes(b"")
    with pytest.raises(W.CorruptWeightsError, match=r"toy.bin: empty toy weights file \(local\); delete it"):
        _load(_toy_spec(), tmp_path, lambda p: pytest.fail("not reached"))


def test_truncated_h5_weights(tmp_path):
    import h5py

    with h5py.File(tmp_path / "full.h5", "w") as f:
        f.create_dataset("conv/kernel", data=np.ones((64, 64), np.float32))
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "toy.bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(W.CorruptWeightsError, match=r"toy.bin: cannot load toy weights from this local file \(OSError"):
        _load(_toy_spec("keras"), tmp_path, lambda p: h5py.File(p, "r")["conv/kernel"][()])


def test_truncated_safetensors_weights(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    save_file({"w": torch.ones(32, 32)}, str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "toy.bin").write_bytes(data[:-100])
    with pytest.raises(W.CorruptWeightsError, match=r"toy.bin: cannot load toy weights .*truncated or not torch toy"):
        _load(_toy_spec(), tmp_path, lambda p: load_file(str(p)))


@pytest.mark.parametrize("content, detail", [
    (b"this is not a checkpoint", r"\(\w+Error: "),
    ("other_model", r"RuntimeError: Error\(s\) in loading state_dict"),
])
def test_corrupt_lite0_checkpoint_names_the_file(tmp_path, content, detail, no_network):
    import torch

    from fkstudy.image import torch_models

    path = tmp_path / weight_spec("efficientnet_lite0").local_names[0]
    if content == "other_model":
        torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    else:
        path.write_bytes(content)
    policy = W.WeightsPolicy(dir=str(tmp_path), allow_random_init=True, allow_download=False)
    with pytest.raises(W.CorruptWeightsError, match=re.escape(str(path)) + r": cannot load efficientnet_lite0 .*"
                       + detail) as err:
        torch_models.load_lite("efficientnet_lite0", policy)
    assert "re-run `dvc repro pretrained`" in str(err.value)


# ------------------------------------------------------------------------------ text features, images
BOW = BowParams(field="name", input="lemmas", min_df=1, max_df=1.0, ngram_max=1, max_features=10)
W2V = Word2VecParams(field="name", input="lemmas", vector_size=8, window=2, min_count=1, epochs=1, sg=0,
                     pooling="mean")


def test_no_train_row_to_fit_on():
    docs = ["red watch", "blue towel", "steel mug"]
    none = Context(ids=["0", "1", "2"], fit_ids=frozenset())  # no row is a train row
    assert not none.fit_mask().any()
    for fn in (lambda: F.bow(docs, BOW, none), lambda: F.word2vec(docs, W2V, none)):
        with pytest.raises(ValueError, match="fit_mask selects none of the 3 documents: no train rows"):
            fn()


def test_word2vec_fit_mask_of_the_wrong_length_is_refused():
    """It used to be zipped silently against the documents (the extra rows ignored)."""
    with pytest.raises(ValueError, match="fit_mask has 2 entries for 3 documents"):
        F.word2vec(["a b", "c d", "e f"], W2V, Context(ids=["0", "1"], fit_ids=frozenset({"0", "1"})))


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_prep_images_with_a_missing_or_empty_image_folder(tmp_path, folder):
    from fkstudy.image.preprocess import build_image_cache, require_images

    image_dir = tmp_path / "Images"
    if folder == "empty":
        image_dir.mkdir()
    images, ids, quality, failures = build_image_cache(catalog(6), image_dir, size=16, aspect="pad", max_pixels=10**6,
                                                       blank_threshold=8.0, progress=False)
    assert ids == [] and len(failures) == 6 and set(failures["reason"]) == {"missing"}
    # an expected failure (bad data.raw_dir / data.image_dir): a StudyError, so the stage prints one line
    with pytest.raises(StudyError, match=r"no image could be decoded \(failures by reason: \{'missing': 6\}\); "
                                           r"check data.raw_dir / data.image_dir"):
        require_images(ids, failures)


# ------------------------------------------------------------------------------ real stage processes
def _repo(tmp_path, params_edit=None) -> Path:
    repo = tmp_path / "repo"
    (repo / "data/interim").mkdir(parents=True)
    # the real dvc.yaml: a stage reads the params its entry declares there
    (repo / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    text = (ROOT / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params_edit(text) if params_edit else text)
    catalog(15).to_parquet(repo / "data/interim/catalog.parquet", index=False)
    return repo


def _run_stage(repo: Path, *args: str, traceback: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "MLFLOW_TRACKING_URI": f"sqlite:///{repo}/mlflow.db"}
    env.pop("FKSTUDY_TRACEBACK", None)
    if traceback:
        env["FKSTUDY_TRACEBACK"] = "1"
    return subprocess.run([sys.executable, str(ROOT / "stages" / args[0]), *args[1:]], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)


def _features(repo: Path, name: str, X, ids, meta) -> str:
    path = repo / paths.feature_set(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if X.dtype == np.float32:
        files.save_features(path, X, ids, meta)
    else:
        _raw_npz(path, X=X, ids=np.asarray(ids), meta=np.asarray(json.dumps(meta)))
    return str(path.relative_to(repo))


def _bad_catalog(repo):
    _set(catalog(15), 4, "split", "holdout").to_parquet(repo / "data/interim/catalog.parquet", index=False)
    return ("clean_text.py",)


def _unknown_ids(repo):
    _features(repo, "text_bow", np.ones((3, 2), np.float32), ["p00", "zz1", "zz2"], {})
    return ("cluster.py", "text_bow")


def _float64(repo):
    _features(repo, "text_bow", np.ones((3, 2), np.float64), ["p00", "p01", "p02"], {})
    return ("cluster.py", "text_bow")


def _fitted_on_all(repo):
    ids = [f"p{i:02d}" for i in range(15)]
    _features(repo, "text_bow", np.ones((15, 2), np.float32), ids, {"fit_on": "all"})
    return ("text_classifier.py", "bow")


# case: (edit of params.yaml, setup(repo) -> stage args, the one `error:` line on stderr, the error's class)
STAGE_CASES = {
    "catalog with an unknown split": (None, _bad_catalog,
                                      r"error: data/interim/catalog.parquet: column 'split'", "CatalogError"),
    "param of the wrong type": (lambda t: t.replace("min_token_len: 2", "min_token_len: two"),
                                lambda repo: ("clean_text.py",),
                                r"error: params: 'clean_text.min_token_len' must be int", "ParamsError"),
    "feature file with unknown ids": (None, _unknown_ids,
                                      r"error: data/features/text_bow.npz: 2 of 3 ids are not in the catalog",
                                      "CatalogError"),
    "feature file of the wrong dtype": (None, _float64,
                                        r"error: data/features/text_bow.npz: X must be float32, got float64",
                                        "FeatureFileError"),
    "features fitted on all rows, for a classifier": (None, _fitted_on_all,
                                                      r"error: data/features/text_bow.npz: fitted on 'all' rows",
                                                      "FeatureFileError"),
    "data path that does not exist": (lambda t: t.replace("raw_dir: data/raw/flipkart", "raw_dir: /nonexistent/flipkart"),
                                      lambda repo: ("ingest.py",),
                                      r"error: data directory /nonexistent/flipkart does not exist", "CatalogError"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(STAGE_CASES))
def test_stage_fails_with_our_message_not_a_library_traceback(tmp_path, case):
    params_edit, setup, message, error_class = STAGE_CASES[case]
    repo = _repo(tmp_path, params_edit)
    args = setup(repo)
    proc = _run_stage(repo, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr[-2000:]
    assert re.match(message, errors[0]), proc.stderr[-2000:]
    assert not list((repo / "metrics").rglob("*.json"))  # nothing half-done for `dvc metrics` to show

    # FKSTUDY_TRACEBACK=1 shows where it was raised: our own check, not a library's internals
    proc = _run_stage(repo, *args, traceback=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert re.match(message, proc.stderr.strip().splitlines()[-1]), proc.stderr[-2000:]
    assert re.search(rf"^\S*{error_class}: ", proc.stderr, re.M), proc.stderr[-2000:]
    frames = re.findall(r'File "([^"]+)", line \d+', proc.stderr)
    assert frames and "/src/fkstudy/" in frames[-1], f"raised from {frames[-1:]}, not from our own check"
    assert not list((repo / "metrics").rglob("*.json"))
