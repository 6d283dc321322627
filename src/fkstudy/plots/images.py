"""Figures for the image preprocessing stage: quality dashboard and per-category sample grid."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def processing_dashboard(quality: pd.DataFrame, failures: pd.DataFrame, blank_threshold: float):
    """Distributions of original size, aspect ratio, blur, contrast, brightness + counts."""
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    ax = axes[0, 0]
    ax.scatter(quality["orig_width"], quality["orig_height"], s=6, alpha=0.5)
    ax.set_xlabel("original width (px)")
    ax.set_ylabel("original height (px)")
    ax.set_title("Original size")

    ax = axes[0, 1]
    ax.hist(np.log2(quality["aspect_ratio"].clip(lower=1e-3)), bins=40, color="#4c72b0")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("log2(width / height)  (0 = square)")
    ax.set_title("Aspect ratio")

    ax = axes[0, 2]
    ax.hist(np.log10(quality["blur"] + 1.0), bins=40, color="#dd8452")
    ax.set_xlabel("log10(1 + variance of Laplacian)  (low = blurry / flat)")
    ax.set_title("Sharpness")

    ax = axes[1, 0]
    ax.hist(quality["contrast"], bins=40, color="#55a868")
    ax.axvline(blank_threshold, color="r", ls="--", lw=1, label=f"near-blank < {blank_threshold:g}")
    ax.set_xlabel("grey-level std")
    ax.set_title("Contrast")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    ax.hist(quality["brightness"], bins=40, color="#8172b3")
    ax.set_xlabel("mean grey level")
    ax.set_title("Brightness")

    ax = axes[1, 2]
    ax.set_axis_off()
    lines = [f"processed: {len(quality)}", f"failed: {len(failures)}"]
    if len(failures):
        lines += [f"  {k}: {v}" for k, v in failures["reason"].value_counts().sort_index().items()]
    lines += [f"near-blank: {int(quality['near_blank'].sum())}",
              f"median size: {int(quality['orig_width'].median())} x {int(quality['orig_height'].median())}"]
    if "mode" in quality:
        lines += [f"mode {k}: {v}" for k, v in quality["mode"].value_counts().sort_index().items()]
    ax.text(0.02, 0.98, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=10,
            transform=ax.transAxes)
    ax.set_title("Counts")
    fig.suptitle("Image preprocessing")
    fig.tight_layout()
    return fig


def sample_grid(images: np.ndarray, ids, categories: pd.Series, n_per_category: int, seed: int = 0):
    """One row per category, `n_per_category` cached images each (seeded choice), captioned."""
    index = {str(i): k for k, i in enumerate(ids)}
    cats = categories[categories.index.isin(list(index))]
    names = sorted(cats.unique())
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(names), n_per_category, squeeze=False,
                             figsize=(1.6 * n_per_category, 1.75 * max(1, len(names))))
    for r, name in enumerate(names):
        members = sorted(cats.index[cats == name])
        pick = rng.choice(len(members), size=min(n_per_category, len(members)), replace=False)
        for c in range(n_per_category):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < len(pick):
                ax.imshow(images[index[members[pick[c]]]])
                ax.set_title(name if len(name) <= 24 else name[:22] + "…", fontsize=7)
    fig.suptitle("Cached images per category (as the extractors see them)")
    fig.tight_layout()
    return fig
