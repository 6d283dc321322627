"""dvc.yaml as the stages see it: stage names and the params each stage declares.

A small resolver of the dvc.yaml features this repository uses — `${...}` interpolation from params.yaml
(and `vars:`), `foreach` over a list or a mapping, `matrix` over lists — so a stage can know, at start-up
and without importing DVC, which params keys it may read (fkstudy.runtime.start_stage).
tests/unit/test_registries.py checks it against DVC's own view of the pipeline.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import StudyError
from .params import dvc_yaml, yaml_text

_WHOLE = re.compile(r"^\$\{\s*([^}]+?)\s*\}$")
_PART = re.compile(r"\$\{\s*([^}]+?)\s*\}")


class PipelineError(StudyError):
    """dvc.yaml cannot be read, or names no such stage."""


def _lookup(ctx: dict, dotted: str) -> Any:
    node: Any = ctx
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PipelineError(f"dvc.yaml: cannot resolve ${{{dotted}}}")
    return node


def _interp(value: Any, ctx: dict) -> Any:
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole:
            return _lookup(ctx, whole.group(1))
        return _PART.sub(lambda m: str(_lookup(ctx, m.group(1))), value)
    if isinstance(value, list):
        return [_interp(v, ctx) for v in value]
    if isinstance(value, dict):
        return {_interp(k, ctx): _interp(v, ctx) for k, v in value.items()}
    return value


PLACEHOLDER = "_"


def _expand(name: str, definition: dict, ctx: dict, placeholders: bool = False) -> dict[str, dict]:
    """One dvc.yaml entry -> {stage name: resolved definition}. `placeholders`: a foreach / matrix over empty lists
    gives one instance `<name>@_` with every item "_" (its script and params sections, for fkstudy.codedeps)."""
    out = _expand_items(name, definition, ctx)
    if out or not placeholders or not ({"foreach", "matrix"} & set(definition)):
        return out
    if "foreach" in definition:
        return {f"{name}@{PLACEHOLDER}": _interp(definition["do"], {**ctx, "key": PLACEHOLDER, "item": PLACEHOLDER})}
    item = {k: PLACEHOLDER for k in definition["matrix"]}
    body = {k: v for k, v in definition.items() if k != "matrix"}
    return {f"{name}@{PLACEHOLDER}": _interp(body, {**ctx, "item": item})}


def _expand_items(name: str, definition: dict, ctx: dict) -> dict[str, dict]:
    if "foreach" in definition:
        items = _interp(definition["foreach"], ctx)
        pairs = items.items() if isinstance(items, dict) else ((str(i), i) for i in items)
        return {f"{name}@{key}": _interp(definition["do"], {**ctx, "key": key, "item": item}) for key, item in pairs}
    if "matrix" in definition:
        axes = {k: _interp(v, ctx) for k, v in definition["matrix"].items()}
        body = {k: v for k, v in definition.items() if k != "matrix"}
        out = {}
        for combo in itertools.product(*axes.values()):
            item = dict(zip(axes, combo))
            out[f"{name}@{'-'.join(str(v) for v in combo)}"] = _interp(body, {**ctx, "item": item})
        return out
    return {name: _interp(definition, ctx)}


def stages(root: str | Path = ".", placeholders: bool = False) -> dict[str, dict]:
    """Every stage of root/dvc.yaml by its DVC name (e.g. "text_features@bow", "train@vgg16-base"); `placeholders`:
    plus `<group>@_` for a group whose lists are empty (see _expand)."""
    root = Path(root)
    try:
        spec = dvc_yaml((root / "dvc.yaml").read_text(encoding="utf-8")) or {}
        ctx = yaml_text((root / "params.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineError(f"{root}: cannot read dvc.yaml / params.yaml ({exc})") from None
    for block in spec.get("vars", []) or []:
        if isinstance(block, dict):
            ctx = {**ctx, **block}
    out: dict[str, dict] = {}
    for name, definition in (spec.get("stages") or {}).items():
        out.update(_expand(name, definition, ctx, placeholders))
    return out


def declared_params(stage: str, root: str | Path = ".") -> list[str]:
    """The params.yaml keys stage `stage` lists under `params:` in dvc.yaml."""
    all_stages = stages(root)
    if stage not in all_stages:
        raise PipelineError(f"dvc.yaml has no stage {stage!r}; stages: {sorted(all_stages)}")
    keys: list[str] = []
    for entry in all_stages[stage].get("params", []) or []:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):  # {params-file: [keys]}
            for file, names in entry.items():
                if Path(str(file)).name != "params.yaml":
                    raise PipelineError(f"dvc.yaml stage {stage}: params from {file} are not supported")
                keys += list(names or [])
    return keys
