"""The framework-neutral head file models/train/<K>/head.npz: written from the Keras head by the train stage,
read back as a torch module (Grad-CAM on a torch backbone) or as arrays.

    dense_kernel [d, h], dense_bias [h], out_kernel [h, c], out_bias [c]   (Keras layout, float32)
"""
from __future__ import annotations

import os

import numpy as np

from .. import files
from ..files import FeatureFileError

HEAD_ARRAYS = ("dense_kernel", "dense_bias", "out_kernel", "out_bias")


def head_arrays(head) -> dict:
    """The weights of a Keras head built by keras_head.build_head, as the four arrays of head.npz."""
    dense, out = head.get_layer("dense"), head.get_layer("out")
    (k1, b1), (k2, b2) = dense.get_weights(), out.get_weights()
    return {"dense_kernel": k1, "dense_bias": b1, "out_kernel": k2, "out_bias": b2}


def save_head_npz(path: str | os.PathLike, head) -> None:
    files.save_npz(path, **head_arrays(head))


def torch_head_from_npz(path_or_arrays):
    """The contract's head (models/train/K/head.npz) as a torch module in eval mode:
    Linear(d, h) -> ReLU -> Dropout -> Linear(h, c) -> Softmax, weights copied from the Keras layout
    (dense_kernel [d, h], dense_bias [h], out_kernel [h, c], out_bias [c]). Output: probabilities.
    `path_or_arrays`: a path to the .npz (loaded with allow_pickle=False) or a mapping of the arrays."""
    import torch
    from torch import nn

    if isinstance(path_or_arrays, (str, os.PathLike)):
        where = str(path_or_arrays)
        if not os.path.exists(where):
            raise FeatureFileError(f"{where}: head weights not found (run the train stage first)")
        try:
            with np.load(where, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # zip / format / pickle-refused errors from numpy
            raise FeatureFileError(f"{where}: unreadable head weights ({type(exc).__name__}: {exc})") from None
    else:
        where, arrays = "head arrays", dict(path_or_arrays)
    missing = [k for k in HEAD_ARRAYS if k not in arrays]
    if missing:
        raise FeatureFileError(f"{where}: not a head weights file, missing arrays {missing}")
    w1, b1, w2, b2 = (np.asarray(arrays[k], np.float32) for k in HEAD_ARRAYS)
    if not (w1.ndim == 2 and w2.ndim == 2 and b1.shape == (w1.shape[1],) and w2.shape[0] == w1.shape[1]
            and b2.shape == (w2.shape[1],)):
        raise FeatureFileError(f"{where}: inconsistent head shapes dense_kernel {w1.shape}, dense_bias "
                               f"{b1.shape}, out_kernel {w2.shape}, out_bias {b2.shape}")
    for k, a in zip(HEAD_ARRAYS, (w1, b1, w2, b2)):
        if not np.isfinite(a).all():
            raise FeatureFileError(f"{where}: {k} contains NaN/inf")
    head = nn.Sequential(nn.Linear(*w1.shape), nn.ReLU(), nn.Dropout(0.0), nn.Linear(*w2.shape), nn.Softmax(dim=1))
    with torch.no_grad():
        for layer, w, b in ((head[0], w1, b1), (head[3], w2, b2)):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            layer.bias.copy_(torch.from_numpy(b))
    return head.eval()
