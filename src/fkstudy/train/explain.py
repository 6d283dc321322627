"""Grad-CAM of the best trained image classifier: which run to explain, and its predictions and heat maps
on the test photos, through the backbone's `Backbone` spec (the maths is fkstudy.train.gradcam).

Best = highest val accuracy among the `train` runs with real (not random-init) backbone weights; test
accuracy never picks it. `explain` dispatches on the registry entry's framework: Keras backbones reload
models/train/<K>/model.keras (preprocess and Grad-CAM layer from the spec); torch backbones rebuild the
backbone with the spec's load and the head from models/train/<K>/head.npz, and Grad-CAM differentiates the
spec's feature map. TensorFlow or torch is imported inside the functions: a process uses one of them, never both.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import StudyError

BATCH = 16


@dataclass
class Explained:
    proba: np.ndarray                           # test probabilities [n, k]
    layer: str                                  # the feature map Grad-CAM differentiates
    maps: Callable[[np.ndarray], np.ndarray]    # row indices -> heat maps [len(idx), H, W] in [0, 1]


def best_run(metrics_dir: str | Path) -> dict:
    """The metrics of the train run to explain: real weights, highest val accuracy, then lowest val loss."""
    runs = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(Path(metrics_dir).glob("*.json"))]
    real = [r for r in runs if r.get("weights") not in ("random-init", None, "n/a")]
    if not real:
        raise StudyError(f"gradcam: no train run with real backbone weights in {metrics_dir}/ (run `dvc repro train`)")
    return max(real, key=lambda r: (r["val_accuracy"], -r["val_loss"]))


def explain(model_dir: str | Path, backbone: str, images: np.ndarray, settings, policy, seed: int,
            n_jobs: int) -> Explained:
    """The trained classifier of `backbone` (models/train/<K>/ = `model_dir`) on uint8 test images: probabilities
    and Grad-CAM maps. `settings`: the backbone's deep_features section (a mapping); `policy`: the
    pretrained-weights policy (torch backbones reload their weights)."""
    from ..image.registry import IMAGE, backbone_spec

    backbone_spec(backbone)  # refuses a deep entry that is no backbone
    return EXPLAINERS[IMAGE[backbone].framework](model_dir, backbone, images, settings, policy, seed, n_jobs)


def keras_model(model_dir: str | Path, backbone: str, images: np.ndarray, settings, policy, seed: int,
                n_jobs: int) -> Explained:
    """The assembled Keras model (backbone + head) on uint8 images (`policy`, `seed`: unused, the model file holds
    the backbone)."""
    from ..frameworks import tensorflow
    from ..image.deep import set_tf_threads
    from ..image.registry import backbone_spec
    from . import gradcam

    tensorflow()
    set_tf_threads(n_jobs)
    import keras

    spec = backbone_spec(backbone)
    model = keras.models.load_model(Path(model_dir) / "model.keras")
    x = spec.function("preprocess")(backbone, settings)(images.astype(np.float32))
    proba = np.asarray(model.predict(x, batch_size=BATCH, verbose=0))
    layer = gradcam.keras_target_layer(model, spec.gradcam_layer)
    return Explained(proba, layer, lambda idx: gradcam.gradcam_keras(model, x[idx], proba[idx].argmax(1), layer))


def torch_model(model_dir: str | Path, backbone: str, images: np.ndarray, settings, policy, seed: int,
                n_jobs: int) -> Explained:
    """A torch backbone (its spec's load, preprocess and feature map) with the trained head of head.npz, on uint8
    images; Grad-CAM differentiates the feature map the head's input is the global average of."""
    import torch

    from ..image import torch_backbone
    from ..image.deep import set_torch_threads
    from . import gradcam
    from .head_npz import torch_head_from_npz

    set_torch_threads(n_jobs)
    net, _ = torch_backbone.load(backbone, policy, seed)
    head = torch_head_from_npz(Path(model_dir) / "head.npz")
    x = torch_backbone.input_fn(backbone, settings)(images)
    fmap = torch_backbone.feature_map(backbone)
    chunks, shape = [], ()
    with torch.inference_mode():
        for i in range(0, len(x), 32):
            A = fmap(net, x[i:i + 32])
            shape = tuple(A.shape[1:])
            chunks.append(head(A.mean(dim=(2, 3))).numpy())
    proba = np.concatenate(chunks)
    layer = f"{torch_backbone.spec(backbone).gradcam_layer} (last conv block, {' x '.join(map(str, shape))})"
    return Explained(proba, layer, lambda idx: gradcam.gradcam_torch(net, head, x[idx], proba[idx].argmax(1),
                                                                     feature_fn=lambda t: fmap(net, t)))


EXPLAINERS = {"keras": keras_model, "torch": torch_model}   # one per framework a backbone may have
