"""Figures for the cluster stage: 2-D maps, contingency heatmap, class-centroid distances."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def scatter_pair(xy: np.ndarray, labels: np.ndarray, clusters: np.ndarray, title: str):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    cmap = plt.get_cmap("tab10")
    for ax, values, name in ((axes[0], labels, "true category"), (axes[1], clusters, "KMeans cluster")):
        for i, v in enumerate(sorted(np.unique(values), key=str)):
            m = values == v
            ax.scatter(xy[m, 0], xy[m, 1], s=7, color=cmap(i % 10), label=str(v), alpha=0.8)
        ax.set_title(f"coloured by {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=7, markerscale=2, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmap(table: pd.DataFrame, title: str, fmt: str = "d", cmap: str = "Blues"):
    fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 3, 0.55 * table.shape[0] + 1.5))
    im = ax.imshow(table.to_numpy(dtype=float), cmap=cmap, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index], fontsize=8)
    vmax = float(np.nanmax(table.to_numpy(dtype=float))) if table.size else 1.0
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                color="white" if float(v) > 0.6 * vmax else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
