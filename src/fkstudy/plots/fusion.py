"""Figures of the fusion stage: accuracy against the text weight of each probability pooling; calibration."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def weight_curves(curves: pd.DataFrame, selected: dict, title: str):
    """`curves`: fusion_report.weight_curves (text_weight, <rule>_<val|cv|test>_accuracy). Solid CV, dashed
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


def calibration(reliability: pd.DataFrame, curve: pd.DataFrame, metrics: dict, title: str):
    """Left: reliability diagram (accuracy against mean confidence per bin, before / after temperature
    scaling; the diagonal is perfect calibration). Right: risk–coverage (accuracy on the most confident
    share answered) with the threshold chosen out of fold marked."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    for scaling, style in (("none", "s--"), ("temperature", "o-")):
        pts = reliability[(reliability["scaling"] == scaling) & (reliability["products"] > 0)]
        label = (f"raw (ECE {metrics['test_ece_uncalibrated']:.3f})" if scaling == "none" else
                 f"T = {metrics['temperature']:.2f} (ECE {metrics['test_ece']:.3f})")
        left.plot(pts["confidence"], pts["accuracy"], style, ms=4, label=label)
    left.set_xlabel("confidence (top probability)")
    left.set_ylabel("accuracy")
    left.set_title("reliability")
    left.legend(fontsize=8)
    right.plot(curve["coverage"], curve["accuracy"], color="tab:blue")
    right.axvline(metrics["test_coverage_at_threshold"], color="black", ls=":", lw=0.8,
                  label=f"p ≥ {metrics['threshold']:.2f}: {metrics['test_coverage_at_threshold']:.0%} answered, "
                        f"accuracy {metrics['test_accuracy_at_threshold']:.3f}")
    right.set_xlabel("coverage (share answered, most confident first)")
    right.set_ylabel("accuracy of the answered")
    right.set_title("risk–coverage")
    right.legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
