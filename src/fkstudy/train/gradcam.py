"""Grad-CAM (Selvaraju et al., 2017) for the trained image classifiers, and the choice of examples.

A heat map says where, in the last convolutional feature map A [h, w, K] of the backbone, the
evidence for one class lies:  weights_k = mean over (h, w) of d score_c / d A_k,
map = ReLU(sum_k weights_k * A_k), bilinearly upsampled to the input size and divided by its
maximum (an all-zero map stays zero). `score_c` is the pre-softmax logit of class c by default
(the paper's choice: the softmax output saturates at 1.0 in float32 for confident predictions and
its gradient then vanishes, leaving an empty map); `score="probability"` uses the softmax output.

Two models are supported, as the `train` stage writes them (models/train/<K>/):
  gradcam_keras  a Keras functional model  input -> backbone (a nested sub-model) -> GAP -> head
                 (model.keras); a flat functional model works too.
  gradcam_torch  a torch backbone with `extract_features` (EfficientNet-Lite: [n, 1280, 7, 7])
                 followed by the head of head.npz (fkstudy.train.head_npz.torch_head_from_npz).
TensorFlow and torch are imported inside the functions: a process uses one of them, never both.

Outputs are float32 [n, H, W] in [0, 1]; `select_examples` picks which test predictions to show
(fkstudy.plots.gradcam.overlay blends a map onto its image).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

SCORES = ("logit", "probability")
# layer classes whose 4-D output can be the Grad-CAM target when no layer is named: a convolution
# (Conv2D, DepthwiseConv2D, SeparableConv2D) or an activation. Pooling, padding, normalisation and
# merge layers are skipped, so VGG16 gives block5_conv3 (not block5_pool), EfficientNetB0
# top_activation, MobileNetV3Small its last Activation.
_ACTIVATIONS = {"Activation", "ReLU", "LeakyReLU", "ELU", "PReLU"}


# --------------------------------------------------------------------------- framework-free helpers
def _check_score(score: str) -> None:
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")


def _class_index(class_index, n: int, n_classes: int | None = None) -> np.ndarray:
    idx = np.asarray(class_index)
    if idx.ndim == 0:
        idx = np.full(n, int(idx))
    if idx.shape != (n,) or (idx.size and idx.dtype.kind not in "iu"):
        raise ValueError(f"class_index must be {n} integers (one class per image), got shape {idx.shape} "
                         f"dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or (n_classes is not None and idx.max() >= n_classes)):
        raise ValueError(f"class_index out of range [0, {n_classes}): {idx.min()}..{idx.max()}")
    return idx.astype(np.int64)


def _batches(n: int, batch_size: int):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return (slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size))


def cam_from_gradients(activations: np.ndarray, gradients: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM maps from channels-last activations and gradients [n, h, w, K] -> float32 [n, H, W].

    ReLU(sum_k mean_hw(grad_k) * A_k), bilinear upsampling to `size` = (H, W), each map divided by
    its maximum; a map with no positive value is returned as zeros (never NaN).
    """
    import cv2

    A = np.asarray(activations, np.float32)
    G = np.asarray(gradients, np.float32)
    if A.ndim != 4 or A.shape != G.shape:
        raise ValueError(f"activations and gradients must both be [n, h, w, K], got {A.shape} and {G.shape}")
    if not (np.isfinite(A).all() and np.isfinite(G).all()):
        raise ValueError("non-finite activations or gradients: the model produced NaN/inf")
    weights = G.mean(axis=(1, 2))                                     # [n, K]
    cams = np.maximum(np.einsum("nhwk,nk->nhw", A, weights), 0.0)     # [n, h, w]
    H, W = (int(s) for s in size)
    out = np.zeros((len(cams), H, W), np.float32)
    for i, cam in enumerate(cams):
        up = cam if cam.shape == (H, W) else cv2.resize(cam, (W, H), interpolation=cv2.INTER_LINEAR)
        top = float(up.max()) if up.size else 0.0
        if top > 0.0:
            out[i] = np.clip(up / top, 0.0, 1.0)
    return out


def select_examples(y_true, y_pred, proba, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the `n` most confident correct and the `n` most confident incorrect predictions.

    Confidence is proba[i, y_pred[i]], the probability of the predicted class; each list is sorted
    from the most confident down (the confident mistakes are the ones worth explaining). Ties (many
    probabilities round to 1.0 in float32) are broken by a permutation drawn from `seed`, so the
    choice is deterministic for a seed. Fewer than `n` are returned when fewer exist.
    """
    y_true, y_pred, proba = np.asarray(y_true), np.asarray(y_pred), np.asarray(proba, np.float64)
    m = len(y_true)
    if y_pred.shape != (m,) or proba.ndim != 2 or len(proba) != m:
        raise ValueError(f"y_true {y_true.shape}, y_pred {y_pred.shape} and proba {proba.shape} must have "
                         "the same number of rows (proba [n, n_classes])")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if m and (y_pred.dtype.kind not in "iu" or y_pred.min() < 0 or y_pred.max() >= proba.shape[1]):
        raise ValueError(f"y_pred must be class indices into the {proba.shape[1]} columns of proba")
    confidence = proba[np.arange(m), y_pred.astype(np.int64)] if m else np.zeros(0)
    order = np.random.default_rng(seed).permutation(m)                 # tie-break
    order = order[np.argsort(-confidence[order], kind="stable")]       # most confident first
    correct = (y_true == y_pred)[order]
    return order[correct][:n].astype(np.int64), order[~correct][:n].astype(np.int64)


# --------------------------------------------------------------------------- Keras
def _is_target_kind(layer) -> bool:
    kind = type(layer).__name__
    return kind.endswith("Conv2D") or kind in _ACTIVATIONS


def _is_4d(layer) -> bool:
    try:
        out = layer.output
    except (AttributeError, ValueError):
        return False
    return not isinstance(out, (list, tuple)) and len(out.shape) == 4


def _flatten(layers) -> list:
    import keras

    flat = []
    for la in layers:
        if type(la).__name__ == "InputLayer":
            continue
        flat.extend(_flatten(la.layers) if isinstance(la, keras.Model) else [la])
    return flat


def _auto_target(container):
    candidates = [la for la in container.layers if _is_target_kind(la) and _is_4d(la)]
    return candidates[-1] if candidates else None


def _locate(model, layer_name: str | None):
    """(container, target layer, index of container in model.layers); container = the model itself
    for a flat model, else the nested sub-model (backbone) holding the target."""
    import keras

    nested = [(i, la) for i, la in enumerate(model.layers) if isinstance(la, keras.Model)]
    if layer_name is None:
        for i, sub in nested:  # the first nested model with a conv/activation map: the backbone
            target = _auto_target(sub)
            if target is not None:
                return sub, target, i
        target = _auto_target(model)
        if target is None:
            raise ValueError(f"model {model.name!r}: no 4-D convolution or activation output to use "
                             "for Grad-CAM; name one with layer_name")
        return model, target, None
    names = {la.name for la in model.layers}
    if layer_name in names:
        return model, model.get_layer(layer_name), None
    for i, sub in nested:
        if layer_name in {la.name for la in sub.layers}:
            return sub, sub.get_layer(layer_name), i
    raise ValueError(f"model {model.name!r}: no layer {layer_name!r} in the model or its nested "
                     f"sub-models {[sub.name for _, sub in nested]}")


def keras_target_layer(model, layer_name: str | None = None) -> str:
    """Name of the layer gradcam_keras differentiates (the auto-picked one when layer_name is None)."""
    return _locate(model, layer_name)[1].name


class _KerasPlan:
    """input -> pre layers -> `features` (container input -> [A, container output]) -> post layers
    -> `last` (the softmax layer, applied as logits or probabilities)."""

    def __init__(self, model, layer_name):
        import keras

        container, target, pos = _locate(model, layer_name)
        if not _is_4d(target):
            raise ValueError(f"layer {target.name!r} has output shape {target.output.shape}: Grad-CAM "
                             "needs a 4-D [n, h, w, channels] feature map")
        self.layer = target.name
        if pos is None:  # flat model: everything up to the last layer is inside `container`
            pre, post = [], []
        else:
            pre, post = _flatten(model.layers[:pos]), _flatten(model.layers[pos + 1:])
        if post:
            self.last = post.pop()
            second = container.output
        else:  # the layer producing the model's output, and its input in this model's graph
            op, node_index, _ = container.output._keras_history
            self.last, second = op, op._inbound_nodes[node_index].input_tensors[0]
        if target is self.last:
            raise ValueError(f"layer {target.name!r} is the model's output layer")
        self.pre, self.post = pre, post
        self.features = keras.Model(container.inputs, [target.output, second], name="gradcam_features")

    def forward(self, x, score: str):
        """(A, scores [n, n_classes]) in one pass; `score` = "logit" or "probability"."""
        for la in self.pre:
            x = la(x, training=False)
        A, z = self.features(x, training=False)
        for la in self.post:
            z = la(z, training=False)
        return A, self._last(z, score)

    def _last(self, z, score: str):
        from keras import ops

        la = self.last
        kind = type(la).__name__
        activation = getattr(getattr(la, "activation", None), "__name__", None)
        if kind == "Dense" and activation == "softmax":
            logits = ops.matmul(z, la.kernel)
            if la.use_bias:
                logits = logits + la.bias
        elif kind == "Softmax" or (kind == "Activation" and activation == "softmax"):
            logits = z
        else:
            if score == "logit":
                raise ValueError(f"score='logit': the model's last layer {la.name!r} ({kind}) is not a "
                                 "softmax Dense/Activation; use score='probability'")
            return la(z, training=False)
        return logits if score == "logit" else ops.softmax(logits, axis=-1)


def gradcam_keras(model, images, class_index, layer_name: str | None = None, *, batch_size: int = 16,
                  score: str = "logit") -> np.ndarray:
    """Grad-CAM maps float32 [n, H, W] in [0, 1] of a Keras model for one class per image.

    `images` are the model's inputs (float, already preprocess_input'ed, [n, H, W, 3]); the target
    is `layer_name` (looked up in the model, then in its nested sub-models) or, when None, the last
    4-D convolution/activation output of the nested backbone (VGG16: block5_conv3). The model must
    be a chain input -> backbone -> GAP -> head (checked: the re-traced probabilities must equal the
    model's own on the first image). Batches of `batch_size` bound the memory.
    """
    import tensorflow as tf
    from keras import ops

    _check_score(score)
    x_all = np.asarray(images, np.float32)
    if x_all.ndim != 4:
        raise ValueError(f"images must be [n, H, W, C], got shape {x_all.shape}")
    n = len(x_all)
    idx = _class_index(class_index, n, int(model.output.shape[-1]))
    plan = _KerasPlan(model, layer_name)

    # one graph per batch shape: ~3x faster than the eager tape on VGG16 (measured), as only the
    # gradient from the score back to A is kept
    @tf.function(reduce_retracing=True)
    def step(x, target):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)  # records every op (frozen backbones included) so dY/dA exists
            A, scores = plan.forward(x, score)
            picked = tf.gather(scores, target, axis=1, batch_dims=1)
        return A, tape.gradient(picked, A), scores

    out = np.zeros((n, *x_all.shape[1:3]), np.float32)
    for k, sl in enumerate(_batches(n, batch_size)):
        A, grads, scores = step(tf.convert_to_tensor(x_all[sl]), tf.convert_to_tensor(idx[sl]))
        if grads is None:
            raise ValueError(f"model {model.name!r}: the class scores do not depend on layer {plan.layer!r}")
        if k == 0:  # one image through the model itself: the re-traced chain must match it
            _check_retrace(model, x_all[:1], ops.softmax(scores[:1], axis=-1) if score == "logit" else scores[:1])
        A, grads = ops.convert_to_numpy(A), ops.convert_to_numpy(grads)
        out[sl] = cam_from_gradients(A, grads, x_all.shape[1:3])
    return out


def _check_retrace(model, x, proba) -> None:
    from keras import ops

    expected = ops.convert_to_numpy(model(x, training=False))
    got = ops.convert_to_numpy(proba)
    if expected.shape != got.shape or not np.allclose(expected, got, rtol=1e-3, atol=1e-5):
        raise ValueError(f"model {model.name!r} is not a chain input -> backbone -> pooling -> head: "
                         "re-running its layers in order does not reproduce its outputs, so Grad-CAM "
                         "cannot be computed from it")


# --------------------------------------------------------------------------- torch
@contextmanager
def _eval_mode(*modules):
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def gradcam_torch(backbone, head, images_nchw, class_index, feature_fn=None, *, batch_size: int = 16,
                  score: str = "logit") -> np.ndarray:
    """Grad-CAM maps float32 [n, H, W] in [0, 1] of torch `backbone` -> global average pool -> `head`.

    `images_nchw`: the backbone's normalised float inputs [n, 3, H, W] (numpy or tensor);
    `feature_fn(x)` returns the last conv feature map [n, K, h, w] (default backbone.extract_features,
    as EfficientNet-Lite0 has). With score="logit" a trailing nn.Softmax of an nn.Sequential head is
    left out. Both modules run in eval mode (their modes are restored afterwards); the backbone is
    only run forward (no gradient through it), the gradient is taken w.r.t. the feature map.
    """
    import torch
    from torch import nn

    _check_score(score)
    x_all = torch.as_tensor(np.asarray(images_nchw, np.float32) if not torch.is_tensor(images_nchw)
                            else images_nchw).float()
    if x_all.ndim != 4:
        raise ValueError(f"images_nchw must be [n, C, H, W], got shape {tuple(x_all.shape)}")
    n = len(x_all)
    idx = _class_index(class_index, n)
    feature_fn = feature_fn or backbone.extract_features
    scorer = head
    if score == "logit":
        if not (isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Softmax)):
            raise ValueError("score='logit' needs an nn.Sequential head ending in nn.Softmax "
                             "(as torch_head_from_npz builds); use score='probability'")
        scorer = head[:-1]
    out = np.zeros((n, *x_all.shape[2:]), np.float32)
    with _eval_mode(backbone, head):
        for sl in _batches(n, batch_size):
            with torch.no_grad():
                A = feature_fn(x_all[sl])
            if A.ndim != 4:
                raise ValueError(f"feature_fn must return [n, K, h, w], got shape {tuple(A.shape)}")
            A = A.detach().float().requires_grad_(True)
            with torch.enable_grad():
                scores = scorer(A.mean(dim=(2, 3)))
                if idx.size and idx.max() >= scores.shape[1]:
                    raise ValueError(f"class_index {idx.max()} out of range for {scores.shape[1]} classes")
                picked = scores.gather(1, torch.from_numpy(idx[sl]).view(-1, 1)).sum()
                (grads,) = torch.autograd.grad(picked, A)
            to_nhwc = (lambda t: t.detach().permute(0, 2, 3, 1).numpy())
            out[sl] = cam_from_gradients(to_nhwc(A), to_nhwc(grads), tuple(x_all.shape[2:]))
    return out
