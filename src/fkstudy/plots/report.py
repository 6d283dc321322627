"""Figures for the report stage."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def ari_comparison(table: pd.DataFrame):
    """ARI per feature set (mean ± std over seeds) beside the seed study's number."""
    t = table.sort_values("ari")
    y = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(t) + 1.5))
    colours = ["#c44e52" if w == "random-init" else ("#4c72b0" if m == "text" else "#55a868")
               for w, m in zip(t["weights"], t["modality"])]
    ax.barh(y, t["ari"], xerr=t["ari_std"], color=colours, height=0.6, label="this study")
    seed = t["seed_ari"].astype(float)
    ax.scatter(seed, y, marker="|", s=300, color="black", zorder=3, label="seed study")
    ax.set_yticks(y, [s + (" (random-init)" if w == "random-init" else "") for s, w in zip(t["set"], t["weights"])])
    ax.set_xlabel("Adjusted Rand Index, KMeans(k=7) vs true category")
    ax.axvline(0, color="grey", lw=0.5)
    ax.legend(loc="lower right")
    ax.set_title("Clustering quality per representation")
    fig.tight_layout()
    return fig
