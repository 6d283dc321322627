"""Figures for the data stage: class balance, category tree sunburst, specification values."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def class_balance(catalog: pd.DataFrame):
    table = catalog.pivot_table(index="category", columns="split", values="id", aggfunc="count", fill_value=0)
    table = table[[c for c in ("train", "val", "test") if c in table.columns]]
    fig, ax = plt.subplots(figsize=(8, 4))
    table.plot.barh(stacked=True, ax=ax, color=["#4c72b0", "#dd8452", "#55a868"])
    ax.set_xlabel("products")
    ax.set_ylabel("")
    ax.set_title("Products per top-level category and split")
    return fig


def category_sunburst(catalog: pd.DataFrame, max_depth: int = 3):
    """Category tree as a sunburst: ring k is level k of product_category_tree."""
    fig, ax = plt.subplots(figsize=(9, 9), subplot_kw={"projection": "polar"})
    ax.set_axis_off()
    levels = ["category", "category_l2", "category_l3"][:max_depth]
    total = len(catalog)
    cmap = plt.get_cmap("tab10")
    tops = sorted(catalog["category"].unique())
    colour = {c: cmap(i % 10) for i, c in enumerate(tops)}

    def ring(depth: int, frame: pd.DataFrame, start: float, parent_colour):
        if depth >= len(levels):
            return
        col = levels[depth]
        counts = frame.groupby(col, sort=True).size()
        angle = start
        for label, n in counts.items():
            width = 2 * np.pi * n / total
            c = colour.get(label, parent_colour) if depth == 0 else parent_colour
            alpha = 1.0 - 0.25 * depth
            if label:
                ax.bar(angle + width / 2, 1, width=width, bottom=depth + 0.6, color=c, alpha=alpha,
                       edgecolor="white", linewidth=0.6)
                if width > (0.25 if depth == 0 else 0.12):
                    rot = np.degrees(angle + width / 2)
                    rot = rot - 180 if 90 < rot < 270 else rot
                    text = label if len(label) <= 22 else label[:20] + "…"
                    ax.text(angle + width / 2, depth + 1.1, text, ha="center", va="center",
                            fontsize=8 if depth == 0 else 6, rotation=rot if depth else 0)
            ring(depth + 1, frame[frame[col] == label], angle, c)
            angle += width

    ring(0, catalog, 0.0, "grey")
    ax.set_title(f"Category tree (first {len(levels)} levels, {total} products)")
    return fig


def specification_values(table: pd.DataFrame):
    if table.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no specifications", ha="center")
        ax.set_axis_off()
        return fig
    labels = [f"{k}: {v}"[:45] for k, v in zip(table["key"], table["value"])]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(table) + 1))
    keys = list(dict.fromkeys(table["key"]))
    cmap = plt.get_cmap("tab10")
    ax.barh(range(len(table))[::-1], table["percentage"], color=[cmap(keys.index(k) % 10) for k in table["key"]])
    ax.set_yticks(range(len(table))[::-1], labels, fontsize=8)
    ax.set_xlabel("% of that key's occurrences")
    ax.set_title("Most frequent specification keys and their top values")
    return fig
