"""params.yaml schema (fkstudy.params): the real file passes; typos, wrong types and bad values name the
dotted key."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from fkstudy.params import Params, ParamsError, load_params, repo_root, validate_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real() -> dict:
    """The raw params.yaml as a plain dict (each test edits a deep copy, then validates it)."""
    with open(ROOT / "params.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_real_params_yaml_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.split.model_dump() == {"train": 0.6, "val": 0.2, "test": 0.2}
    assert params.cluster.primary in params.cluster.reductions
    assert isinstance(params.seed, int)


def test_load_params_defaults_to_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert repo_root() == ROOT
    assert load_params() == load_params(ROOT / "params.yaml")


def test_repo_root_walks_up_to_dvc_yaml_and_ignores_dvc_root(monkeypatch, tmp_path):
    # queued/--temp experiments run in a copy but DVC_ROOT names the original repository
    monkeypatch.setenv("DVC_ROOT", str(ROOT))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert repo_root() == tmp_path.resolve()


def _set(params: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = params
    for k in path:
        node = node[k]
    node[last] = value


def _del(params: dict, dotted: str) -> None:
    *path, last = dotted.split(".")
    node = params
    for k in path:
        node = node[k]
    del node[last]


@pytest.mark.parametrize("dotted, value, message", [
    # unknown (typo) keys, as `dvc exp run -S cluster.tsne_perplexty=10` would add
    ("cluster.tsne_perplexty", 10, r"unknown key.*'cluster\.tsne_perplexty'"),
    ("seeds", 1, r"unknown key.*'seeds'"),
    ("text_features.bert.batchsize", 8, r"unknown key.*'text_features\.bert\.batchsize'"),
    # wrong types
    ("data.min_per_class", "30", r"'data\.min_per_class' must be int, got '30'"),
    ("n_jobs", True, r"'n_jobs' must be int, got True \(bool\)"),
    ("n_jobs", 2.0, r"'n_jobs' must be int"),
    ("clean_text.keep_digits", 1, r"'clean_text\.keep_digits' must be bool"),
    ("data.categories", "Watches", r"'data\.categories' must be list"),
    ("data.categories", ["Watches", 3], r"'data\.categories\[1\]' must be str"),
    ("cluster.tsne_perplexity", "30", r"'cluster\.tsne_perplexity' must be float"),
    ("data.split.train", True, r"'data\.split\.train' must be float, got True"),
    ("data", 5, r"'data' must be a mapping"),
    # out of range
    ("cluster.n_seeds", 0, r"'cluster\.n_seeds' must be >= 1"),
    ("seed", -1, r"'seed' must be >= 0"),
    ("text_features.tfidf.max_df", 1.5, r"'text_features\.tfidf\.max_df' must be <= 1\.0"),
    ("cluster.tsne_perplexity", 1.0, r"'cluster\.tsne_perplexity' must be >= 2"),
    ("data.max_image_pixels", 100, r"'data\.max_image_pixels' must be >= 10000"),
    # bad choices
    ("text_features.tfidf.field", "title", r"'text_features\.tfidf\.field' must be one of \['name', 'description', 'both'\]"),
    ("text_features.word2vec.sg", 2, r"'text_features\.word2vec\.sg' must be one of"),
    ("cluster.reductions", ["pca", "umap"], r"'cluster\.reductions\[1\]' must be one of"),
    ("text_features.bow.input", "lemma", r"'text_features\.bow\.input' must be one of"),
    # split must sum to 1
    ("data.split", {"train": 0.5, "val": 0.2, "test": 0.2}, r"'data\.split' fractions must sum to 1, got 0\.[89]"),
    ("data.split.val", 0.3, r"'data\.split' fractions must sum to 1"),
    ("data.split", {"train": 0.8, "test": 0.2}, r"missing key.*'data\.split\.val'"),
], ids=lambda v: v.replace("image", "img") if isinstance(v, str) else None)  # `-k "not image"` skips image tests
def test_bad_value_names_the_dotted_key(real, dotted, value, message):
    params = copy.deepcopy(real)
    _set(params, dotted, value)
    with pytest.raises(ParamsError, match=message):
        validate_params(params)


@pytest.mark.parametrize("dotted", ["seed", "data.min_per_class", "text_features.bert.max_length",
                                    "cluster", "mlflow.experiment"])
def test_missing_key_is_named(real, dotted):
    params = copy.deepcopy(real)
    _del(params, dotted)
    with pytest.raises(ParamsError, match=r"missing key.*'" + re.escape(dotted) + "'"):
        validate_params(params)


def test_int_is_an_acceptable_float(real):
    params = copy.deepcopy(real)
    params["cluster"]["tsne_perplexity"] = 30
    params["data"]["split"] = {"train": 1, "val": 0, "test": 0}
    validate_params(params)


def test_load_params_file_errors(tmp_path, real):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ParamsError, match="must be a mapping"):
        load_params(empty)


def test_load_params_rejects_a_typo_written_to_the_file(tmp_path, real):
    params = copy.deepcopy(real)
    params["clean_text"]["stopword"] = "none"  # what `dvc exp run -S clean_text.stopword=none` writes
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"'clean_text\.stopword'.*Known keys here:.*'clean_text\.stopwords'"):
        load_params(path)
