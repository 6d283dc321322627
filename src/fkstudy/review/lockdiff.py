"""Stages that re-ran and plots that changed, from the dvc.lock of each revision (pure).

dvc.lock records, for every stage that ran, its command, the hash of each dependency, the value of each
param it reads and the hash of each output — `cache: false` outputs (metrics, plots) included. A stage
whose entry differs between the two revisions ran in between (new inputs, or outputs that changed);
a plot file whose recorded hash differs changed.
"""
from __future__ import annotations

from dataclasses import dataclass

HASH_FIELDS = ("md5", "etag", "checksum", "sha256")
SHOWN = 3  # paths / keys named per reason before "+N"


@dataclass(frozen=True)
class StageChange:
    name: str
    status: str  # "re-ran", "new", "removed"
    reasons: tuple[str, ...] = ()


def _hash(item: dict):
    for field in HASH_FIELDS:
        if item.get(field):
            return item[field]
    return (item.get("size"), item.get("nfiles"))


def _flatten(node, prefix: str = "") -> dict:
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out = {}
    for k, v in node.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def stages(lock: dict | None) -> dict[str, dict]:
    """name -> {"cmd", "deps": {path: hash}, "params": {dotted key: value}, "outs": {path: hash}}, in the
    lock's (pipeline) order."""
    out = {}
    for name, st in ((lock or {}).get("stages") or {}).items():
        st = st or {}
        params = {}
        for values in (st.get("params") or {}).values():
            params.update(_flatten(values or {}))
        out[name] = {"cmd": st.get("cmd"),
                     "deps": {d["path"]: _hash(d) for d in st.get("deps") or []},
                     "params": params,
                     "outs": {o["path"]: _hash(o) for o in st.get("outs") or []}}
    return out


def outputs(lock: dict | None) -> dict[str, object]:
    """Every output path of every stage -> its recorded hash."""
    return {path: h for st in stages(lock).values() for path, h in st["outs"].items()}


def _differing(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k, ...) != new.get(k, ...))


def _named(what: str, items: list[str]) -> str:
    more = f" (+{len(items) - SHOWN})" if len(items) > SHOWN else ""
    return f"{what}: " + ", ".join(items[:SHOWN]) + more


def reasons(old: dict, new: dict) -> tuple[str, ...]:
    """Why a stage's entry differs: its command, the params, the deps, or only its outputs."""
    out = []
    if old["cmd"] != new["cmd"]:
        out.append("command changed")
    if keys := _differing(old["params"], new["params"]):
        out.append(_named("params", keys))
    if paths := _differing(old["deps"], new["deps"]):
        out.append(_named("deps", paths))
    if not out and _differing(old["outs"], new["outs"]):
        out.append("outputs only (same inputs)")
    return tuple(out)


def stage_changes(old_lock: dict | None, new_lock: dict | None) -> list[StageChange]:
    """Stages whose lock entry differs (re-ran), appeared (new) or disappeared (removed), pipeline order."""
    old, new = stages(old_lock), stages(new_lock)
    out = []
    for name, entry in new.items():
        if name not in old:
            out.append(StageChange(name, "new"))
        elif entry != old[name]:
            out.append(StageChange(name, "re-ran", reasons(old[name], entry)))
    out += [StageChange(name, "removed") for name in old if name not in new]
    return out


def plot_changes(old_lock: dict | None, new_lock: dict | None, prefix: str = "plots/") -> list[tuple[str, str]]:
    """(path, "changed" | "added" | "removed") for every output under `prefix` whose hash differs."""
    old, new = outputs(old_lock), outputs(new_lock)
    out = []
    for path in sorted(set(old) | set(new)):
        if not path.startswith(prefix):
            continue
        if path not in old:
            out.append((path, "added"))
        elif path not in new:
            out.append((path, "removed"))
        elif old[path] != new[path]:
            out.append((path, "changed"))
    return out
