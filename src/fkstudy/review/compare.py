"""The metrics and params of two revisions compared (pure): which metric moved, by how much, against
which noise band, and the verdict.

Input is what DVC prints: `dvc metrics diff --json --all` ({file: {dotted key: {"old", "new", "diff"}}})
and `dvc params diff --json` ({file: {dotted key: {"old", "new"}}}).

Noise band of a metric, in this order:
  1. its own spread in the same file: `<x>_std` beside `<x>` (or `<x>_mean`) — the std over seeds
     (`cluster`, `multiseed`), or over CV folds for `cv_*` keys (`text_classifier`, `fusion`). The band
     is 1 std, the larger of the two revisions'. It is the spread of one run, not the standard error of the
     mean: with 5 seeds or 10 folds it is about 2–3 standard errors, close to a 95 % interval.
  2. a bootstrap 95 % interval of a test metric from the stage's per-product predictions (see bands).
  3. none: the verdict is "changed" (no noise estimate).
A summary key repeating another metric (same old and new value, e.g. `cluster`'s `silhouette`, the
primary reduction's `silhouette_clusters_mean`) takes that metric's spread. The spread keys themselves
(`_std`, `_ci95_low`, `_ci95_high` beside their metric) are not reported as metrics of their own;
timings (`*seconds`) are not metrics and are left out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

SPREAD = re.compile(r"^(?P<base>.+?)_(?:std|ci95_low|ci95_high)$")
TIMING = re.compile(r"(^|[._])seconds$")
# by the words of a key's last part (`test_accuracy` -> test, accuracy); counts and sizes are not scores
_COUNT = {"n", "rows", "support", "folds", "seeds", "dim", "epoch", "epochs", "params", "minus", "k", "c"}
_HIGHER = {"accuracy", "f1", "ari", "nmi", "silhouette", "precision", "recall", "auc", "r2"}
_LOWER = {"loss", "error", "seconds"}

VERDICT_ORDER = ("worse", "better", "changed", "within noise", "added", "removed")


@dataclass(frozen=True)
class Band:
    width: float
    source: str  # "seed std", "CV fold std", "bootstrap 95 %"


@dataclass(frozen=True)
class Change:
    file: str
    key: str
    old: object
    new: object
    band: Band | None = None
    direction: int | None = None  # +1: higher is better, -1: lower is better, None: unknown
    verdict: str = ""

    @property
    def delta(self) -> float | None:
        return self.new - self.old if is_number(self.old) and is_number(self.new) else None


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same(old, new) -> bool:
    if is_number(old) and is_number(new):
        return float(old) == float(new)
    return old == new


def is_timing(file: str, key: str) -> bool:
    return file.startswith("reports/timings") or bool(TIMING.search(key))


def spread_parent(key: str, keys) -> str | None:
    """The metric a spread key belongs to (`ari_std` -> `ari`, `tsne.nmi_std` -> `tsne.nmi_mean`), if the
    file has it."""
    m = SPREAD.match(key)
    if not m:
        return None
    for parent in (m["base"], m["base"] + "_mean"):
        if parent in keys:
            return parent
    return None


def direction(key: str) -> int | None:
    """+1 when a higher value is better (accuracy, F1, precision, recall, ARI, NMI, silhouette), -1 when
    lower is (loss, error), None for anything else (counts, sizes, settings, differences)."""
    words = set(key.rsplit(".", 1)[-1].lower().split("_"))
    if words & _COUNT:
        return None
    if words & _LOWER:
        return -1
    if words & _HIGHER:
        return 1
    return None


def spread_band(entries: dict, key: str) -> Band | None:
    """Band from the metric's own `<x>_std` in the same file (larger of both revisions), or None."""
    candidates = [key + "_std"] + ([key[: -len("_mean")] + "_std"] if key.endswith("_mean") else [])
    for std_key in candidates:
        if std_key in entries:
            values = [v for v in (entries[std_key].get("old"), entries[std_key].get("new")) if is_number(v)]
            if values:
                leaf = key.rsplit(".", 1)[-1]
                return Band(float(max(values)), "CV fold std" if leaf.startswith("cv") else "seed std")
    return None


def verdict(old, new, band: Band | None, sense: int | None) -> str:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if not (is_number(old) and is_number(new)):
        return "changed"
    delta = new - old
    if band is not None and abs(delta) <= band.width + 1e-12:
        return "within noise"
    if band is None or sense is None:
        return "changed"
    return "better" if delta * sense > 0 else "worse"


def changed_metrics(diff: dict) -> list[Change]:
    """Every metric whose value differs between the revisions (timings and spread keys left out), with
    its direction and, when its file has one, its spread band (not judged yet: see judge)."""
    out = []
    for file in sorted(diff):
        entries = diff[file] or {}
        for key in sorted(entries):
            entry = entries[key] or {}
            old, new = entry.get("old"), entry.get("new")
            if is_timing(file, key) or spread_parent(key, entries) or same(old, new):
                continue
            band = spread_band(entries, key) or alias_band(entries, key)
            out.append(Change(file, key, old, new, band, direction(key)))
    return out


def alias_band(entries: dict, key: str) -> Band | None:
    """The spread of another metric of the same file with the same old and the same new value: a summary
    key repeating one (`silhouette` is `tsne.silhouette_clusters_mean` of the primary reduction)."""
    old, new = (entries[key] or {}).get("old"), (entries[key] or {}).get("new")
    if not (is_number(old) and is_number(new)):
        return None
    for other in sorted(entries):
        e = entries[other] or {}
        if other != key and same(e.get("old"), old) and same(e.get("new"), new) and not spread_parent(other, entries):
            band = spread_band(entries, other)
            if band:
                return Band(band.width, f"{band.source} of {other}")
    return None


def needs_band(change: Change) -> bool:
    """A numeric change with no spread of its own: a candidate for a bootstrap band."""
    return change.band is None and change.delta is not None


def judge(changes: list[Change], extra: dict[tuple[str, str], Band] | None = None) -> list[Change]:
    """Each change with its band (its own spread first, else `extra[(file, key)]`) and its verdict."""
    extra = extra or {}
    out = []
    for c in changes:
        band = c.band or extra.get((c.file, c.key))
        out.append(replace(c, band=band, verdict=verdict(c.old, c.new, band, c.direction)))
    return out


def groups(judged: list[Change]) -> dict[str, list[Change]]:
    """beyond (better / worse / changed with a band), within (noise), unbanded (a score with no noise
    estimate), other (counts, settings, names: no direction and no band), added, removed — each sorted
    by verdict, file, then overall metrics before per-class ones."""
    out: dict[str, list[Change]] = {k: [] for k in ("beyond", "within", "unbanded", "other", "added", "removed")}
    for c in judged:
        if c.verdict in ("better", "worse") or (c.verdict == "changed" and c.band is not None):
            out["beyond"].append(c)
        elif c.verdict == "within noise":
            out["within"].append(c)
        elif c.verdict in ("added", "removed"):
            out[c.verdict].append(c)
        elif c.direction is not None:
            out["unbanded"].append(c)
        else:
            out["other"].append(c)
    for rows in out.values():
        rows.sort(key=lambda c: (VERDICT_ORDER.index(c.verdict), c.file, "per_class" in c.key, c.key))
    return out


@dataclass(frozen=True)
class ParamChange:
    file: str
    key: str
    old: object
    new: object


def param_changes(diff: dict) -> list[ParamChange]:
    """Params whose value differs (`dvc params diff --json` lists only those, but be sure)."""
    return [ParamChange(file, key, e.get("old"), e.get("new"))
            for file in sorted(diff) for key, e in sorted((diff[file] or {}).items())
            if not same(e.get("old"), e.get("new"))]
