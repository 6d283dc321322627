"""The building blocks of the params schema (a leaf module: it imports nothing from the study).

Every section of params.yaml is a pydantic model deriving from `Section`: unknown keys are refused
(`dvc exp run -S` with a typo silently adds a key), types are strict (YAML `true` is not an int, "30" is
not a number), NaN/inf are refused and ranges are checked. A pydantic `ValidationError` is turned into a
`ParamsError` whose message names the dotted key, e.g. `params: 'cluster.n_seeds' must be >= 1, got 0`.
"""
from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import StudyError


class ParamsError(StudyError, ValueError):
    """params.yaml does not match the schema."""


class Section(BaseModel):
    """A params.yaml section: strict, no unknown keys, no NaN/inf, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


# ------------------------------------------------------------------------------ pydantic -> ParamsError
_TYPE_NAMES = {"int_type": "int", "int_parsing": "int", "float_type": "float", "float_parsing": "float",
               "bool_type": "bool", "bool_parsing": "bool", "string_type": "str", "list_type": "list",
               "tuple_type": "list", "dict_type": "a mapping", "model_type": "a mapping",
               "model_attributes_type": "a mapping", "int_from_float": "int"}


def dotted(loc: tuple) -> str:
    """('data', 'categories', 1) -> 'data.categories[1]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _number_hint(value: Any, expected: str) -> str:
    """A number written in quotes: say so instead of a bare type error."""
    if isinstance(value, str) and expected in ("int", "float"):
        try:
            float(value)
        except ValueError:
            return ""
        return " — a number in quotes"
    return ""


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The section model found by following `loc` (field names) from `model`."""
    for part in loc:
        if not isinstance(part, str) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        model = next((a for a in (ann, *typing.get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
        if model is None:
            return None
    return model


def prefix_of(parent: tuple) -> str:
    return dotted(parent) + "." if parent else ""


def _message(err: dict) -> str:
    key, kind, value, ctx = dotted(err["loc"]), err["type"], err.get("input"), err.get("ctx") or {}
    where = f"'{key}'" if key else "the top level"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"params: {where} must be a mapping, got {value!r}"
    if kind in _TYPE_NAMES:
        expected = _TYPE_NAMES[kind]
        return f"params: {where} must be {expected}, got {value!r} ({type(value).__name__}){_number_hint(value, expected)}"
    if kind == "finite_number":
        return f"params: {where} must be a finite number, got {value!r}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"params: {where} must be {'>=' if kind.endswith('equal') else '>'} {ctx.get('ge', ctx.get('gt'))}, got {value!r}"
    if kind in ("less_than_equal", "less_than"):
        return f"params: {where} must be {'<=' if kind.endswith('equal') else '<'} {ctx.get('le', ctx.get('lt'))}, got {value!r}"
    if kind == "literal_error":
        return f"params: {where} must be one of {_choices(ctx.get('expected', ''))}, got {value!r}"
    if kind == "too_short":
        return f"params: {where} needs at least {ctx.get('min_length')} value(s), got {value!r}"
    if kind == "value_error":
        return f"params: {where} {ctx.get('error', err['msg'])}"
    return f"params: {where}: {err['msg']} (got {value!r})"


def _choices(expected: str) -> list:
    """pydantic's "'a', 'b' or 'c'" back to ['a', 'b', 'c'] (the values keep their repr)."""
    import ast

    parts = expected.replace(" or ", ", ").split(", ")
    try:
        return [ast.literal_eval(p) for p in parts]
    except (ValueError, SyntaxError):
        return parts


def params_error(exc: ValidationError, model: type[BaseModel]) -> ParamsError:
    """One ParamsError for a ValidationError: unknown keys first (with the keys known there), then missing
    keys, then the first bad value — each naming the dotted key."""
    errors = exc.errors(include_url=False)
    unknown = [e for e in errors if e["type"] in ("extra_forbidden", "invalid_key")]
    if unknown:
        parent = unknown[0]["loc"][:-1]
        names = sorted((prefix_of(parent) + str(e["input"] if e["type"] == "invalid_key" else e["loc"][-1])
                        for e in unknown if e["loc"][:-1] == parent), key=str)
        sub = _model_at(model, parent)
        prefix = prefix_of(parent)
        known = sorted(prefix + k for k in sub.model_fields) if sub else []
        return ParamsError(f"params: unknown key(s) {names} — a typo in `dvc exp run -S`? Known keys here: {known}")
    missing = [e for e in errors if e["type"] == "missing"]
    if missing:
        return ParamsError(f"params: missing key(s) {sorted(dotted(e['loc']) for e in missing)}")
    return ParamsError(_message(errors[0]))


# ------------------------------------------------------------------------------ references between sections
def methods(info, section: str) -> tuple[str, ...] | None:
    """The methods params.yaml declares in `section` (its mapping-valued keys, e.g. text_features.bert), read
    from the raw file the loader passes as validation context; None when validated without one (a section
    model on its own, as in unit tests). A section that names another section's method (fusion.text_set,
    cluster.tsne_perplexity_by_set) checks it here, so loading it never imports another modality's registry;
    tests/unit/test_registries.py checks that these keys are the registries' names."""
    raw = (info.context or {}).get("raw") if info is not None else None
    if not isinstance(raw, dict):
        return None
    node = raw.get(section)
    return tuple(k for k, v in node.items() if isinstance(v, dict)) if isinstance(node, dict) else ()


def check_method(value: str, info, *sections: str) -> str:
    """`value` must be a method of one of `sections` (see `methods`)."""
    known = [m for s in sections for m in (methods(info, s) or ())]
    if all(methods(info, s) is None for s in sections) or value in known:
        return value
    raise ValueError(f"must be one of {known} (the methods of {' / '.join(sections)}), got {value!r}")


def feature_set_names(info) -> set[str] | None:
    """text_<method> / image_<method> for every method params.yaml declares; None without context."""
    text, classical, deep = (methods(info, s) for s in ("text_features", "image_features", "deep_features"))
    if text is None:
        return None
    return {f"text_{m}" for m in text} | {f"image_{m}" for m in (*(classical or ()), *(deep or ()))}
