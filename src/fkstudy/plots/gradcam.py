"""Grad-CAM figure: each example as its image and its heat-map overlay side by side (as the seed
study showed them), or the overlays alone, captioned "true / pred (p)"."""
from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def example_title(true_name: str, pred_name: str, p: float) -> str:
    """The caption of one example: "true / pred (p)" with p the probability of the predicted class."""
    return f"{true_name} / {pred_name} ({p:.2f})"


def gradcam_grid(images, overlays, titles, ncols: int = 3, title: str | None = None):
    """`overlays` (uint8 [n, H, W, 3], from gradcam.overlay) in a grid of `ncols` examples per row;
    with `images` (the same examples, uint8) each example is image | overlay; `images=None` shows the
    overlays only. `titles`: one caption per example (see example_title). An empty selection gives a
    figure that says so."""
    overlays = np.asarray(overlays)
    n = len(overlays)
    if len(titles) != n or (images is not None and len(images) != n):
        raise ValueError(f"{n} overlays, {len(titles)} titles"
                         + ("" if images is None else f", {len(images)} images") + ": counts must match")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if n == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no examples", ha="center", va="center")
        if title:
            ax.set_title(title)
        return fig
    per = 1 if images is None else 2
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols * per, squeeze=False, figsize=(2.3 * cols * per, 2.6 * rows + 0.4))
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, cols)
        caption = textwrap.fill(str(titles[i]), width=18 * per + 8)
        if images is not None:
            axes[r, c * per].imshow(images[i])
            axes[r, c * per].set_title(caption, fontsize=7, loc="left")
            axes[r, c * per + 1].imshow(overlays[i])
        else:
            axes[r, c].imshow(overlays[i])
            axes[r, c].set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """The heat map coloured with `cmap` and blended onto the image: (1 - alpha) * image + alpha * colour."""
    image = np.asarray(image_uint8)
    heat = np.asarray(heatmap, np.float32)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heatmap shape {heat.shape} != image size {image.shape[:2]}")
    if not np.isfinite(heat).all():
        raise ValueError("heatmap contains NaN/inf")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colour = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colour
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)
