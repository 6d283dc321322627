"""params.yaml: load it, validate the sections a caller needs against their schema, hand them out typed.

Each section of params.yaml has one pydantic model (`SECTIONS`: section -> "module:Model"), living beside the
code that reads it; a method's section (text_features.bert, deep_features.vgg16) is validated by the params
model of its registry entry. A stage loads and validates ONLY the sections its dvc.yaml entry declares
(fkstudy.runtime.start_stage), importing only their models: a text stage never imports the image registry,
and the code dependencies generated from the imports (fkstudy.codedeps) stay small and exact. Every load
also refuses an unknown top-level key (`dvc exp run -S clsuter.n_seeds=3` silently adds a key). Within a
section: unknown keys, wrong types and out-of-range values are refused with a `ParamsError` naming the
dotted key. A section naming another section's method (fusion.text_set) is checked against the raw file's
keys (fkstudy.schema.check_method), not by importing the other registry.

`load_params(path)` without sections validates the whole file (tests, CLIs): `Params` is that full model.
"""
from __future__ import annotations

import importlib
import os
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Iterable

import yaml
from pydantic import Field, ValidationError, create_model

from .paths import repo_root
from .schema import ParamsError, Section, params_error

__all__ = ["SECTIONS", "SCALARS", "Params", "ParamsError", "load_params", "validate_params", "repo_root",
           "section_model"]

# Top-level keys holding one value
SCALARS: dict[str, object] = {
    "seed": Annotated[int, Field(ge=0)],                 # split, Word2Vec, t-SNE, KMeans, training
    "n_jobs": Annotated[int, Field(ge=1, le=64)],        # threads each stage may use
}
# Sections: the model that validates each, imported only when a caller needs that section.
# fkstudy.codedeps reads this table: a stage's code dependencies include the modules of the sections it declares.
SECTIONS: dict[str, str] = {
    "pipeline": "fkstudy.pipeline_params:PipelineParams",
    "data": "fkstudy.data.params:DataParams",
    "clean_text": "fkstudy.text.clean:CleanTextParams",
    "text_features": "fkstudy.text.params:TextFeaturesParams",
    "fine_tune_text": "fkstudy.text.params:FineTuneTextParams",
    "cluster": "fkstudy.evaluate.params:ClusterParams",
    "mlflow": "fkstudy.tracking:MlflowParams",
    "prep_images": "fkstudy.image.preprocess:PrepImagesParams",
    "image_features": "fkstudy.image.params:ImageFeaturesParams",
    "pretrained": "fkstudy.weightfiles:PretrainedParams",
    "deep_features": "fkstudy.image.params:DeepFeaturesParams",
    "train": "fkstudy.train.params:TrainParams",
    "gradcam": "fkstudy.train.params:GradcamParams",
    "zero_shot": "fkstudy.train.params:ZeroShotParams",
    "multiseed": "fkstudy.train.params:MultiseedParams",
    "fusion": "fkstudy.train.params:FusionParams",
    "text_classifier": "fkstudy.train.params:TextClassifierParams",
    "register": "fkstudy.train.params:RegisterParams",
    "label_audit": "fkstudy.train.params:LabelAuditParams",
    "scale": "fkstudy.scale.params:ScaleParams",
}
TOP_LEVEL = (*SCALARS, *SECTIONS)


def section_model(section: str) -> type[Section]:
    """The pydantic model of one section (imports its module)."""
    module, _, attr = SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=None)
def _model(keys: tuple[str, ...]) -> type[Section]:
    """One model holding `keys` (top-level names) as required fields, in params.yaml's order."""
    fields = {k: (SCALARS[k], ...) if k in SCALARS else (section_model(k), ...) for k in keys}
    with warnings.catch_warnings():  # the `register` section shadows ABCMeta.register on the class, harmlessly
        warnings.filterwarnings("ignore", message='Field name "register"')
        return create_model("Params", __base__=Section, **fields)


def __getattr__(name: str):
    if name == "Params":  # the whole schema, built on first use (importing every section's module)
        return _model(TOP_LEVEL)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_params(raw, sections: Iterable[str] | None = None) -> Section:
    """The typed params (only `sections` when given, else every key), or a ParamsError naming the first bad
    dotted key. Unknown top-level keys are refused in both cases."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params: the top level must be a mapping, got {raw!r}")
    unknown = sorted(map(str, set(raw) - set(TOP_LEVEL)))
    if unknown:
        raise ParamsError(f"params: unknown key(s) {unknown} — a typo in `dvc exp run -S`? Known keys here: "
                          f"{sorted(TOP_LEVEL)}")
    if sections is None:
        keys = TOP_LEVEL
    else:
        wanted = set(sections)
        bad = sorted(wanted - set(TOP_LEVEL))
        if bad:
            raise ParamsError(f"params: no section(s) {bad} in the schema; known: {sorted(TOP_LEVEL)}")
        keys = tuple(k for k in TOP_LEVEL if k in wanted)
    model = _model(keys)
    try:
        return model.model_validate({k: raw[k] for k in keys if k in raw}, context={"raw": raw})
    except ValidationError as exc:
        raise params_error(exc, model) from None


def read_yaml(path: str | os.PathLike) -> object:
    """A YAML file parsed safely, refusing duplicate keys; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file not found: {path}")
    try:
        return yaml_text(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None


def load_params(path: str | os.PathLike | None = None, sections: Iterable[str] | None = None) -> Section:
    return validate_params(read_yaml(Path(path) if path else repo_root() / "params.yaml"), sections)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last,
    e.g. after a merge left two `seed:` lines), and reads exponent floats as YAML 1.2 (DVC's ruamel) does.
    Only those: other YAML 1.1 readings stay PyYAML's (`yes`/`no`/`on`/`off` are booleans, `0755` octal) —
    params.yaml uses none of them; write true/false and quote such strings.

    PyYAML follows YAML 1.1, where `2e-05` and `1e-3` (no dot, or an unsigned exponent) are strings; DVC reads and
    writes params.yaml as YAML 1.2 (ruamel), and `dvc exp run -S` rewrites the whole file with Python's float repr:
    every float below 1e-4 became `1e-05`, a string here, and the stages reading it stopped (measured: a
    `fine_tune_text.lr` sweep failed on its first point; `train.fine_tune.lr: 0.00001` after any -S)."""

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


_UniqueKeyLoader.add_implicit_resolver(   # the YAML 1.2 floats 1.1 misses: an exponent without a dot or a sign
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def yaml_text(text: str) -> object:
    """YAML text parsed as params.yaml is (read_yaml's loader: duplicate keys refused, YAML 1.2 floats)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def dvc_yaml(text: str) -> object:
    """dvc.yaml or dvc.lock text (files DVC validates or writes itself): PyYAML's safe loader on libyaml when it
    has it — dvc.lock is ~300 kB, 1.5 s for the pure-Python parser and 0.1 s for the C one."""
    if yaml.__with_libyaml__:
        return yaml.load(text, Loader=yaml.CSafeLoader)
    return yaml.safe_load(text)
