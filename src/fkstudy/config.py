"""params.yaml loading with a schema.

`dvc exp run -S key=value` with a mistyped key silently adds a new param, and a
wrong type only fails deep inside a library. Every stage loads its params through
`load_params`, which rejects unknown keys, wrong types and out-of-range values
with a message that names the dotted key.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml


class ParamsError(ValueError):
    """params.yaml does not match the schema."""


@dataclass(frozen=True)
class P:
    """One leaf of the schema: a type plus optional range / choices."""

    kind: type | tuple[type, ...]
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    item: "P | None" = None  # for lists
    check: Callable[[Any], str | None] | None = None

    def validate(self, key: str, value: Any) -> None:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        ok = isinstance(value, kinds)
        if bool in (type(value),) and bool not in kinds:
            ok = False  # yaml `true` is not an int
        if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True  # 1 is an acceptable float
        if not ok:
            names = "/".join(k.__name__ for k in kinds)
            raise ParamsError(f"params: '{key}' must be {names}, got {value!r} ({type(value).__name__})"
                              f"{_number_hint(value, kinds)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamsError(f"params: '{key}' must be a finite number, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ParamsError(f"params: '{key}' must be one of {list(self.choices)}, got {value!r}")
        if self.lo is not None and value < self.lo:
            raise ParamsError(f"params: '{key}' must be >= {self.lo}, got {value!r}")
        if self.hi is not None and value > self.hi:
            raise ParamsError(f"params: '{key}' must be <= {self.hi}, got {value!r}")
        if self.item is not None:
            for i, v in enumerate(value):
                self.item.validate(f"{key}[{i}]", v)
        if self.check is not None:
            msg = self.check(value)
            if msg:
                raise ParamsError(f"params: '{key}' {msg}")


def _number_hint(value: Any, kinds: tuple) -> str:
    """YAML 1.1 reads `1e-3` (no dot) as a string: say so instead of a bare type error."""
    if isinstance(value, str) and (float in kinds or int in kinds):
        try:
            float(value)
        except ValueError:
            return ""
        return " — a number in quotes, or YAML's `1e-3` (write 1.0e-3)"
    return ""


def _sums_to_one(split: dict) -> str | None:
    total = sum(split.values())
    return None if abs(total - 1.0) < 1e-6 else f"fractions must sum to 1, got {total}"


def _no_limit_or_at_least(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if v == 0 or v >= low else f"must be 0 (no limit) or >= {low}, got {v!r}"


INT = P(int)
POS = P(int, lo=1)
FRAC = P(float, lo=0.0, hi=1.0)
BOOL = P(bool)
STR = P(str)
TEXT_INPUT = P(str, choices=("lemmas", "stems", "raw"))
TEXT_FIELD = P(str, choices=("name", "description", "both"))

SCHEMA: dict = {
    "seed": P(int, lo=0),
    "n_jobs": P(int, lo=1, hi=64),
    "data": {
        "raw_dir": STR,
        "csv_name": STR,
        "image_dir": STR,
        "categories": P(list, item=STR),
        "split": {"train": FRAC, "val": FRAC, "test": FRAC, "__check__": _sums_to_one},
        "min_per_class": P(int, lo=2),
        "max_image_pixels": P(int, lo=10_000),
        "min_image_side": P(int, lo=1),
        "tree_max_depth": P(int, lo=1, hi=10),
        "top_spec_keys": POS,
        "top_spec_values": POS,
    },
    "clean_text": {
        "min_token_len": P(int, lo=1, hi=10),
        "stopwords": P(str, choices=("sklearn", "none")),
        "extra_stopwords": P(list, item=STR),
        "keep_digits": BOOL,
    },
    "text_features": {
        "fit_on": P(str, choices=("train", "all")),
        "bow": {"field": TEXT_FIELD, "input": TEXT_INPUT, "min_df": POS, "max_df": FRAC, "ngram_max": P(int, lo=1, hi=3),
                "max_features": POS},
        "tfidf": {"field": TEXT_FIELD, "input": TEXT_INPUT, "min_df": POS, "max_df": FRAC, "ngram_max": P(int, lo=1, hi=3),
                  "max_features": POS, "sublinear_tf": BOOL},
        "word2vec": {"field": TEXT_FIELD, "input": TEXT_INPUT, "vector_size": P(int, lo=8, hi=1024), "window": P(int, lo=1, hi=50),
                     "min_count": POS, "epochs": P(int, lo=1, hi=1000), "sg": P(int, choices=(0, 1)),
                     "pooling": P(str, choices=("mean", "tfidf"))},
        "glove": {"field": TEXT_FIELD, "input": TEXT_INPUT, "pooling": P(str, choices=("mean", "tfidf"))},
        "bert": {"field": TEXT_FIELD, "input": TEXT_INPUT, "model_dir": STR, "max_length": P(int, lo=8, hi=512),
                 "batch_size": P(int, lo=1, hi=1024)},
        "use": {"field": TEXT_FIELD, "input": TEXT_INPUT, "tfhub_handle": STR, "batch_size": P(int, lo=1, hi=4096)},
    },
    "cluster": {
        "reductions": P(list, item=P(str, choices=("none", "pca", "tsne"))),
        "primary": P(str, choices=("none", "pca", "tsne")),
        "pca_components": P(int, lo=2, hi=1000),
        "tsne_perplexity": P(float, lo=2, hi=200),
        "tsne_pca_components": P(int, lo=0, hi=1000),
        "tsne_metric": P(str, choices=("euclidean", "cosine")),
        "tsne_init": P(str, choices=("random", "pca")),
        "normalize": P(str, choices=("l2", "standard", "none")),
        "n_seeds": P(int, lo=1, hi=50),
        "kmeans_n_init": P(int, lo=1, hi=100),
        "tsne_max_samples": P(int, lo=0, check=_no_limit_or_at_least(100)),
        "silhouette_max_samples": P(int, lo=0, check=_no_limit_or_at_least(100)),
    },
    "mlflow": {
        "experiment": STR,
    },
}


def _validate(node: dict, spec: dict, prefix: str) -> None:
    if not isinstance(node, dict):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ParamsError(f"params: {where} must be a mapping, got {node!r}")
    known = {k for k in spec if k != "__check__"}
    unknown = sorted(set(node) - known, key=str)  # YAML keys may be ints/bools (`1:`, `yes:`)
    if unknown:
        raise ParamsError(
            f"params: unknown key(s) {[prefix + str(u) for u in unknown]} — a typo in `dvc exp run -S`? "
            f"Known keys here: {sorted(prefix + k for k in known)}")
    missing = sorted(known - set(node))
    if missing:
        raise ParamsError(f"params: missing key(s) {[prefix + m for m in missing]}")
    for key in sorted(known):
        sub = spec[key]
        if isinstance(sub, dict):
            _validate(node[key], sub, f"{prefix}{key}.")
            check = sub.get("__check__")
            if check is not None:
                msg = check(node[key])
                if msg:
                    raise ParamsError(f"params: '{prefix}{key}' {msg}")
        else:
            sub.validate(prefix + key, node[key])


def full_schema() -> dict:
    """The core schema plus the image stages' sections (kept beside their code, merged here lazily)."""
    from .image.deep_params_schema import DEEP_SCHEMA
    from .image.params_schema import IMAGE_SCHEMA

    from .train.params_schema import TRAIN_SCHEMA

    schema = {**SCHEMA, **IMAGE_SCHEMA}
    for section, spec in DEEP_SCHEMA.items():
        schema[section] = {**schema.get(section, {}), **spec}
    schema.update(TRAIN_SCHEMA)
    return schema


def validate_params(params: dict) -> dict:
    _validate(params, full_schema(), "")
    return params


def repo_root() -> Path:
    """The repository the stage runs in: the nearest folder up from the cwd holding dvc.yaml.

    Not $DVC_ROOT: in a queued/--temp experiment DVC runs the stage inside the copy under
    .dvc/tmp/exps but sets DVC_ROOT to the original repository, so trusting it made a temp
    experiment read the workspace's params.yaml and overwrite the workspace's outputs (measured).
    """
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").exists():
            return d
    return here


def load_params(path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path else repo_root() / "params.yaml"
    if not path.exists():
        raise ParamsError(f"params file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            params = yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return validate_params(params)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last,
    e.g. after a merge left two `seed:` lines)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges; its keys may be overridden on purpose
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader's own "found unhashable key" error follows
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)
