"""Weight files any modality uses: the `pretrained` params and the policy built from them (where to look, what
to do when nothing is found), files shipped inside pip packages (path, version, sha256), portable paths.

Image-specific resolution (WeightSpec, Keras / torch / open_clip caches, random-init fallback) is
fkstudy.image.weights; the text encoders' offline fill is fkstudy.text.fill. Both build on this module,
which imports neither half.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from .schema import Section


class PretrainedParams(Section):
    dir: str                    # local weights dir (relative to the repo root), git-ignored
    allow_random_init: bool     # no weights anywhere: random init + loud warning, or stop
    allow_download: bool        # let the library download into its cache when not found


@dataclass(frozen=True)
class WeightsPolicy:
    """The `pretrained` params: where to look and what to do when nothing is found."""

    dir: str = "weights"
    allow_random_init: bool = False
    allow_download: bool = True

    @classmethod
    def from_params(cls, pretrained) -> "WeightsPolicy":
        return cls(dir=pretrained.dir, allow_random_init=pretrained.allow_random_init,
                   allow_download=pretrained.allow_download)


def package_file(package: str, relative: str) -> Path | None:
    """A data file shipped inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / relative


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def portable(path: str | os.PathLike) -> str:
    """A path as the same on every machine: `<package>/<file>` inside site-packages (wherever the
    environment lives: a venv under the home directory or the checkout must not put its own path, e.g.
    `~/.cache/fkstudy/venv-<hash>/lib/python3.11/...`, into a record), else relative to the cwd (the
    repository) when inside it, `~/…` under the home directory, else the file name alone."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    p = p.resolve()
    parts = p.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            last = len(parts) - 1 - parts[::-1].index(marker)
            return "/".join(parts[last + 1:])
    for root, label in ((Path.cwd().resolve(), ""), (Path.home().resolve(), "~/")):
        try:
            return label + p.relative_to(root).as_posix()
        except ValueError:
            pass
    return p.name
