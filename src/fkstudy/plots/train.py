"""Figures for the training stages: confusion matrix, per-class F1, MLP learning curves."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def confusion_matrix(table: pd.DataFrame, title: str, classes=None):
    """`table` has one row per prediction with columns actual, predicted (evaluate.metrics.confusion_table)."""
    classes = list(classes) if classes is not None else sorted(set(table["actual"]) | set(table["predicted"]))
    cm = pd.crosstab(table["actual"], table["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
    fig, ax = plt.subplots(figsize=(0.9 * len(classes) + 3, 0.7 * len(classes) + 2))
    values = cm.to_numpy()
    ax.imshow(values, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(values[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > values.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def per_class_f1(per_class: dict, title: str):
    """Horizontal bars of F1 per class (per_class: {class: {"f1": ...}}); several models side by side
    when given {model: per_class}."""
    series = per_class if all(isinstance(v, dict) and "f1" not in v for v in per_class.values()) else {"": per_class}
    classes = list(next(iter(series.values())))
    fig, ax = plt.subplots(figsize=(7, 1.5 + len(classes) * (0.3 + 0.12 * len(series))))
    height = 0.8 / len(series)
    for k, (name, pc) in enumerate(series.items()):
        f1 = [pc[c]["f1"] for c in classes]
        ax.barh(np.arange(len(classes)) + k * height, f1, height=height, label=name or None)
    ax.set_yticks(np.arange(len(classes)) + height * (len(series) - 1) / 2, classes, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (test)")
    ax.invert_yaxis()
    if len(series) > 1:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def learning_curves(curves: dict, title: str):
    """MLP curves, one line per seed: curves = {label: DataFrame(epoch, train_loss, val_loss, val_accuracy)}."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    cmap = plt.get_cmap("tab10")
    for i, (label, c) in enumerate(curves.items()):
        a.plot(c["epoch"], c["train_loss"], color=cmap(i % 10), lw=1, ls="--")
        a.plot(c["epoch"], c["val_loss"], color=cmap(i % 10), lw=1.3, label=str(label))
        b.plot(c["epoch"], c["val_accuracy"], color=cmap(i % 10), lw=1.3, label=str(label))
    a.set_title("loss (dashed: train, solid: val)")
    a.set_xlabel("epoch")
    b.set_title("val accuracy")
    b.set_xlabel("epoch")
    a.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def history(hist: pd.DataFrame, title: str, best_epoch: int | None = None):
    """Keras history: loss and accuracy per epoch, train vs val; the kept (best val-loss) epoch marked."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in ((a, "loss"), (b, "accuracy")):
        ax.plot(hist["epoch"], hist[key], label="train", lw=1.3)
        ax.plot(hist["epoch"], hist[f"val_{key}"], label="val", lw=1.3)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"kept: epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def prediction_grid(images, titles, correct, title: str, ncols: int = 6):
    """Test photos with "true / predicted (p)" captions, green when right and red when wrong."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.6 * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, t, ok in zip(axes.ravel(), images, titles, correct):
        ax.imshow(img)
        ax.set_title(t, fontsize=7, color="tab:green" if ok else "tab:red")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def prediction_examples(images, y_true, y_pred, confidence, title: str, ncols: int = 6):
    """prediction_grid of chosen test examples, captioned "true -> predicted (confidence)"."""
    titles = [f"{t[:18]}\n-> {p[:18]} ({c:.2f})" for t, p, c in zip(y_true, y_pred, confidence)]
    return prediction_grid(images, titles, [t == p for t, p in zip(y_true, y_pred)], title, ncols)
