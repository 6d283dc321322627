"""Figure of the fusion stage: accuracy against the text weight of each probability pooling."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def weight_curves(curves: pd.DataFrame, selected: dict, title: str):
    """`curves`: fusion.weight_curves (text_weight, <rule>_<val|cv|test>_accuracy). Solid CV, dashed
    val, dotted test; the selected candidate is circled (text weight 0 = image alone, 1 = text alone)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = {"cv_accuracy": "-", "val_accuracy": "--", "test_accuracy": ":"}
    colours = {"average_proba": "tab:blue", "geometric_proba": "tab:orange"}
    for rule, colour in colours.items():
        for score, ls in styles.items():
            col = f"{rule}_{score}"
            if col in curves and curves[col].notna().any():
                ax.plot(curves["text_weight"], curves[col], ls=ls, color=colour, marker=".",
                        label=f"{rule} {score.split('_')[0]}")
    if selected.get("text_weight") is not None and f"{selected['mode']}_cv_accuracy" in curves:
        row = curves[(curves["text_weight"] - selected["text_weight"]).abs() < 1e-9]
        if len(row):
            ax.scatter([selected["text_weight"]], row[f"{selected['mode']}_cv_accuracy"], s=160, facecolors="none",
                       edgecolors="black", zorder=5, label=f"selected: {selected['name']}")
    ax.set_xlabel("text weight w (0 = image alone, 1 = text alone)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return fig
