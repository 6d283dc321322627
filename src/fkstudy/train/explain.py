"""Grad-CAM of the best trained image classifier: which run to explain, and its predictions and heat maps
on the test photos, per framework (the maths is fkstudy.train.gradcam).

Best = highest val accuracy among the `train` runs with real (not random-init) backbone weights; test
accuracy never picks it. Keras backbones reload models/train/<K>/model.keras; torch backbones rebuild
backbone + head from their weights file and models/train/<K>/head.npz. TensorFlow or torch is imported
inside the functions: a process uses one of them, never both.
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


def keras_model(model_dir: str | Path, backbone: str, images: np.ndarray, n_jobs: int) -> Explained:
    """The assembled Keras model (backbone + head) on uint8 images."""
    from ..frameworks import tensorflow
    from ..image.deep import set_tf_threads
    from ..image.keras_models import keras_preprocess
    from . import gradcam

    tensorflow()
    set_tf_threads(n_jobs)
    import keras

    model = keras.models.load_model(Path(model_dir) / "model.keras")
    x = keras_preprocess(backbone)(images.astype(np.float32))
    proba = np.asarray(model.predict(x, batch_size=BATCH, verbose=0))
    layer = gradcam.keras_target_layer(model)
    return Explained(proba, layer, lambda idx: gradcam.gradcam_keras(model, x[idx], proba[idx].argmax(1), layer))


def torch_model(model_dir: str | Path, backbone: str, images: np.ndarray, normalization: str, policy, seed: int,
                n_jobs: int) -> Explained:
    """An EfficientNet-Lite backbone with the trained head of head.npz, on uint8 images."""
    import torch

    from ..image.deep import set_torch_threads
    from ..image.torch_models import lite_input, load_lite
    from . import gradcam
    from .head_npz import torch_head_from_npz

    set_torch_threads(n_jobs)
    net, _ = load_lite(backbone, policy, seed)
    head = torch_head_from_npz(Path(model_dir) / "head.npz")
    x = lite_input(images, normalization)
    with torch.inference_mode():
        proba = np.concatenate([head(net.extract_features(x[i:i + 32]).mean(dim=(2, 3))).numpy()
                                for i in range(0, len(x), 32)])
    layer = "extract_features (last conv block, 1280 x 7 x 7)"
    return Explained(proba, layer, lambda idx: gradcam.gradcam_torch(net, head, x[idx], proba[idx].argmax(1)))
