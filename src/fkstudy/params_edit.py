"""Editing params.yaml for a sweep (fkstudy.sweep): a grid point as DVC `-S` overrides, and one key rewritten in
place so the rest of the file (comments, flow-style lists, key order) stays as it was."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from .errors import StudyError
from .params import yaml_text

PARAMS = "params.yaml"


class ParamsEditError(StudyError):
    """A key that is not there, or a value that cannot be rewritten on its own."""


def lookup(data: dict, dotted: str, where: str):
    """`a.b.c` in nested mappings; a missing key is an error naming it."""
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsEditError(f"{where}: no key {dotted!r}")
        node = node[part]
    return node


def set_args(point: dict, params: dict) -> list[str]:
    """`-S` overrides (DVC's Hydra grammar) putting `point` into `params`; values as JSON, which DVC reads as YAML.
    A mapping replaces the current one key by key: `-S key={}` would be merged into it (measured: the old keys
    stayed), so the keys it drops are deleted (`~key.sub`) and its own are set (`++key.sub=value`)."""
    out = []
    for key, value in point.items():
        if isinstance(value, dict):
            now = lookup(params, key, PARAMS) or {}
            out += [f"~{key}.{sub}" for sub in now if sub not in value]
            out += [f"++{key}.{sub}={json.dumps(v)}" for sub, v in value.items()]
        else:
            out.append(f"{key}={json.dumps(value)}")
    return [a for o in out for a in ("-S", o)]


def write_param(path: Path, dotted: str, value) -> None:
    """Set one key of params.yaml by rewriting its one line (value in flow style, its comment kept): every other
    line stays as it was. Checked by reading the file back; atomic."""
    from ruamel.yaml import YAML

    from .files import write_text

    text = path.read_text(encoding="utf-8")
    expected = yaml_text(text)
    if lookup(expected, dotted, str(path)) == value:
        return   # already so: the file is left as it is (a block-style value is not re-flowed)
    *parents, last = dotted.split(".")
    node = YAML().load(text)
    for part in parents:
        node = node[part]
    line = node.lc.key(last)[0]
    lines = text.splitlines(keepends=True)
    indent = len(lines[line]) - len(lines[line].lstrip())
    end = line + 1   # a block value goes on over the lines indented deeper than its key
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    while end > line + 1 and not lines[end - 1].strip():
        end -= 1
    m = re.match(rf"^(\s*{re.escape(last)}:)(\s*)(.*?)(\s+#.*)?$", lines[line].rstrip("\n"))
    flow = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    flow = flow.removesuffix("...").strip()   # a bare scalar is dumped as a document
    if m:
        lines[line:end] = [f"{m[1]}{m[2] or ' '}{flow}{m[4] or ''}\n"]
    new = "".join(lines)
    target = expected   # the file as read, with this one value set: what the new text must parse to
    for part in parents:
        target = target[part]
    target[last] = value
    if yaml_text(new) != expected:
        raise ParamsEditError(f"{path}: {dotted} is not a one-line value here: set it to {flow} by hand")
    write_text(path, new)
