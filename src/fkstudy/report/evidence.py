"""What the report reads besides the metrics files: the per-product test predictions the supervised stages
write (bootstrap 95 % intervals of their test metrics, the category pairs a model confuses) and the label
audit's tables.

`gather` is the only file reading here; the rest are pure functions of what it read. The bootstrap is
evaluate.bootstrap.intervals on the predictions CSVs read by review.bands (the same intervals
`python -m fkstudy review` uses for its noise bands). An interval is shown only when the predictions
reproduce the value in the metrics file (within review.bands.TOLERANCE): otherwise the CSV belongs to
another run and its interval would describe some other model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import paths
from ..evaluate.bootstrap import LEVEL, intervals
from ..review.bands import TOLERANCE, read_predictions
from .findings import best_text, best_trained
from .formatting import missing

# The label audit's outputs the report shows (besides metrics/label_audit.json)
LABEL_PAIRS = "plots/label_audit/pairs.csv"
LABEL_EXAMPLES = "plots/label_audit/examples.png"
FUSION_PREDICTIONS = "plots/fusion/fusion_confusion.csv"
STATISTICS = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class Interval:
    point: float
    low: float
    high: float
    n: int  # products resampled

    def describe(self, pct: bool = False) -> str:
        """E.g. "95 % bootstrap interval 0.905–0.967 over 210 test products" (pct: "90.5–96.7 %")."""
        span = f"{100 * self.low:.1f}–{100 * self.high:.1f} %" if pct else f"{self.low:.3f}–{self.high:.3f}"
        return f"{100 * LEVEL:.0f} % bootstrap interval {span} over {self.n} test products"


@dataclass
class Evidence:
    """intervals: "fusion" (selected fusion), "text" (best text classifier), "image" (best real-weights
    transfer-learning model) -> statistic -> Interval; predictions: the same keys -> (actual, predicted),
    only for predictions that reproduce the recorded test accuracy;
    label_pairs / label_issues: the label audit's tables (None when not written)."""
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)
    predictions: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    label_pairs: pd.DataFrame | None = None
    label_issues: pd.DataFrame | None = None

    def interval(self, model: str, stat: str = "accuracy") -> Interval | None:
        return self.intervals.get(model, {}).get(stat)

    def confused(self, model: str = "fusion", top: int = 3) -> list[tuple[str, str, int, int]]:
        return confused_pairs(*self.predictions[model], top=top) if model in self.predictions else []


def bootstrap(actual, predicted, recorded: dict[str, float]) -> dict[str, Interval]:
    """An Interval for each statistic of `recorded` (accuracy / macro_f1 -> the value in the metrics file)
    whose point estimate these predictions reproduce."""
    _, stats = intervals(actual, predicted)
    out = {}
    for stat, value in recorded.items():
        point, low, high = (float(x) for x in stats[stat])
        if not missing(value) and abs(point - float(value)) <= TOLERANCE:
            out[stat] = Interval(point, low, high, len(actual))
    return out


def confused_pairs(actual, predicted, top: int = 3) -> list[tuple[str, str, int, int]]:
    """The category pairs with the most mistakes between them, either way: (a, b, a predicted as b, b
    predicted as a), most mistakes first (ties: alphabetical)."""
    counts: dict[tuple[str, str], int] = {}
    for a, p in zip(actual, predicted):
        if a != p:
            counts[(a, p)] = counts.get((a, p), 0) + 1
    pairs = {tuple(sorted(k)) for k in counts}
    rows = [(a, b, counts.get((a, b), 0), counts.get((b, a), 0)) for a, b in pairs]
    rows = [(b, a, ba, ab) if ba > ab else (a, b, ab, ba) for a, b, ab, ba in rows]  # larger direction first
    return sorted(rows, key=lambda r: (-(r[2] + r[3]), r[0], r[1]))[:top]


def _read_predictions(path: Path) -> tuple[list[str], list[str]] | None:
    return read_predictions(path.read_text(encoding="utf-8")) if path.is_file() else None


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False) if path.is_file() else None


def prediction_files(metrics: dict, train: pd.DataFrame) -> dict[str, tuple[str, dict[str, float]]]:
    """model -> (its test predictions CSV, the recorded statistics to reproduce), for the models whose
    intervals the report shows."""
    out = {}
    fu = metrics.get("fusion") or {}
    if "fusion_test_accuracy" in fu:
        out["fusion"] = (FUSION_PREDICTIONS, {"accuracy": fu["fusion_test_accuracy"],
                                              "macro_f1": fu.get("fusion_macro_f1")})
    k, text = best_text(metrics)
    if text:
        out["text"] = (f"plots/text_classifier/{k}/confusion.csv",
                       {"accuracy": text.get("test_accuracy"), "macro_f1": text.get("macro_f1")})
    bt = best_trained(train) if not train.empty else None
    if bt is not None:
        out["image"] = (f"plots/train/{bt['model']}/confusion.csv",
                        {"accuracy": bt["test_accuracy"], "macro_f1": bt["macro_f1"]})
    return out


def gather(root: str | Path, metrics: dict, train: pd.DataFrame) -> Evidence:
    """Read the predictions of the selected fusion, the best text classifier and the best image model, and
    the label audit's tables, under `root` (the repository root); anything absent is left out."""
    root = Path(root)
    ev = Evidence()
    for model, (rel, recorded) in prediction_files(metrics, train).items():
        read = _read_predictions(root / rel)
        if not read or not read[0]:
            continue
        found = bootstrap(*read, {s: v for s, v in recorded.items() if s in STATISTICS})
        if "accuracy" in found:  # these predictions are the recorded model's: their mistakes can be shown too
            ev.intervals[model], ev.predictions[model] = found, read
    ev.label_pairs = _read_csv(root / LABEL_PAIRS)
    ev.label_issues = _read_csv(root / paths.LABEL_ISSUES)
    return ev
