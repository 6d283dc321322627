"""Bootstrap noise bands of test metrics from the per-product predictions a stage commits (pure).

A supervised stage writes its test predictions as `plots/<dir>/confusion.csv` (or
`plots/<dir>/<prefix>_confusion.csv`): one row per test product, columns id, actual, predicted. Resampling
those products with replacement (fixed seed) and rescoring each resample gives a percentile interval of
the stage's test accuracy, macro / weighted / micro F1, ARI of the predictions and per-class precision,
recall and F1 — the sampling noise of a test set that size. Its half-width is the metric's band.
"""
from __future__ import annotations

import csv
import io
import re

from ..evaluate.bootstrap import RESAMPLES, SEED, intervals

TOLERANCE = 1e-3  # the predictions must reproduce the recorded value (metric files are rounded to 4 digits)

_CONFUSION = re.compile(r"^plots/(?P<dir>.+)/(?:(?P<prefix>[A-Za-z0-9]+)_)?confusion\.csv$")
_PER_CLASS = re.compile(r"^per_class\.(?P<label>.+)\.(?P<stat>precision|recall|f1)$")
_OVERALL = {"test_accuracy": "accuracy", "accuracy": "accuracy", "micro_f1": "accuracy",
            "macro_f1": "macro_f1", "weighted_f1": "weighted_f1", "ari": "ari"}


def metrics_file_of(plot_path: str) -> tuple[str, str] | None:
    """The metrics file a predictions file belongs to, and the prefix of its keys there:
    plots/text_classifier/bow/confusion.csv -> (metrics/text_classifier/bow.json, "");
    plots/fusion/fusion_confusion.csv -> (metrics/fusion.json, "fusion_"). None for other files."""
    m = _CONFUSION.match(plot_path)
    if not m:
        return None
    prefix = m["prefix"] or ""
    return f"metrics/{m['dir']}.json", f"{prefix}_" if prefix else ""


def read_predictions(text: str) -> tuple[list[str], list[str]]:
    """(actual, predicted) from the CSV text (columns id, actual, predicted; other columns ignored)."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"actual", "predicted"} <= set(reader.fieldnames):
        raise ValueError(f"predictions need columns actual, predicted; found {reader.fieldnames}")
    rows = list(reader)
    return [r["actual"] for r in rows], [r["predicted"] for r in rows]


def _label_key(name: str) -> str:
    from ..evaluate.metrics import (
        class_key,  # the key metric files use for class names (fusion)
    )

    return class_key(name)


def statistic_of(key: str, prefix: str, labels: list[str]) -> tuple[str, int | None] | None:
    """Which bootstrapped statistic a metric key is: ("accuracy", None), ("f1", class index), ... or None.
    `per_class.<label>.<stat>` matches a class by its label or by its key (fusion writes keys)."""
    if prefix and not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    if rest in _OVERALL:
        return _OVERALL[rest], None
    m = _PER_CLASS.match(rest)
    if not m:
        return None
    for i, label in enumerate(labels):
        if m["label"] in (label, _label_key(label)):
            return m["stat"], i
    return None


def half_widths(actual, predicted, values: dict[str, float], prefix: str = "",
                resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, float]:
    """Band (half-width of the bootstrap interval) for each key of `values` (metric key -> recorded value)
    that is a bootstrappable statistic of these predictions. A key whose recorded value the predictions
    do not reproduce (within TOLERANCE) gets no band: the file then holds some other predictions."""
    labels, stats = intervals(actual, predicted, resamples, seed)
    out = {}
    for key, value in values.items():
        which = statistic_of(key, prefix, labels)
        if which is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        stat, i = which
        point, low, high = (x if i is None else x[i] for x in stats[stat])
        if abs(float(point) - value) <= TOLERANCE:
            out[key] = float(high - low) / 2
    return out
