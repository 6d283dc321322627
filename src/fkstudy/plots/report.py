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


def backbone_comparison(train: pd.DataFrame):
    """Transfer learning per backbone/variant: test accuracy bars (random-init in red), the parameter count
    written beside each bar, the seed study's accuracy as a black tick where it has one. No fit time: a
    wall-clock figure would change the picture on every run (docs/benchmarks.md has the costs)."""
    if train.empty:
        fig, ax = plt.subplots(figsize=(8, 1.5))
        ax.text(0.5, 0.5, "no transfer-learning results (stage train not run)", ha="center", va="center")
        ax.set_axis_off()
        return fig
    t = train.sort_values(["backbone", "variant"], ascending=[False, False]).reset_index(drop=True)
    y = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(t) + 1.6))
    colours = ["#c44e52" if w == "random-init" else "#4c72b0" for w in t["weights"]]
    hatches = ["//" if v == "augmented" else "" for v in t["variant"]]
    acc = t["test_accuracy"].astype(float).fillna(0)
    bars = ax.barh(y, acc, color=colours, height=0.6)
    for bar, h in zip(bars, hatches):
        bar.set_hatch(h)
    ax.scatter(t["seed_accuracy"].astype(float), y, marker="|", s=300, color="black", zorder=3, label="seed study")
    for i, r in t.iterrows():
        par = "" if pd.isna(r["params"]) else f" ({r['params'] / 1e6:.1f} M params)"
        ax.text(min(acc[i], 1.0) + 0.01, i, f"{acc[i]:.3f}{par}", va="center", fontsize=8)
    ax.set_yticks(y, [m + (" (random-init)" if w == "random-init" else "") for m, w in zip(t["model"], t["weights"])])
    ax.set_xlim(0, 1.45)
    ax.set_xlabel("test accuracy (frozen backbone + dense head)")
    ax.set_title("Transfer learning: backbone comparison")
    if t["seed_accuracy"].notna().any():
        ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
