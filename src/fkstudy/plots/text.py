"""Figures for the text stages: word clouds and top terms per category."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def top_terms(X: np.ndarray, vocabulary: list[str], labels: np.ndarray, n: int = 10) -> pd.DataFrame:
    """The n highest-weighted terms per category (mean weight over that category's products)."""
    rows = []
    vocab = np.asarray(vocabulary)
    for cat in sorted(np.unique(labels)):
        mean = X[labels == cat].mean(0)
        for rank, j in enumerate(np.argsort(-mean, kind="stable")[:n], start=1):
            rows.append(dict(category=cat, rank=rank, term=vocab[j], weight=round(float(mean[j]), 5)))
    return pd.DataFrame(rows)


def top_terms_figure(table: pd.DataFrame, title: str):
    cats = list(dict.fromkeys(table["category"]))
    cols = 4
    rows = int(np.ceil(len(cats) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, cat in zip(axes.flat, cats):
        t = table[table["category"] == cat].sort_values("rank", ascending=False)
        ax.barh(t["term"], t["weight"], color="#4c72b0")
        ax.set_title(cat, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(cats):]:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def word_clouds(X: np.ndarray, vocabulary: list[str], labels: np.ndarray, title: str, seed: int = 0):
    """One word cloud per category, word size = mean weight in that category."""
    from wordcloud import WordCloud

    cats = sorted(np.unique(labels))
    cols = 4
    rows = int(np.ceil((len(cats) + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    panels = [("all products", np.ones(len(labels), bool))] + [(c, labels == c) for c in cats]
    for ax, (name, mask) in zip(axes.flat, panels):
        weights = X[mask].mean(0)
        freqs = {vocabulary[j]: float(weights[j]) for j in np.argsort(-weights)[:100] if weights[j] > 0}
        if freqs:
            wc = WordCloud(width=400, height=250, background_color="white", random_state=seed,
                           colormap="plasma").generate_from_frequencies(freqs)
            ax.imshow(wc, interpolation="bilinear")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
