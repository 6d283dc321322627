"""How the report writes a number: one place for "n/a", digits, units and met / not met."""
from __future__ import annotations

import math

# The weights label of a model run without its pretrained weights: its numbers are not comparable.
RANDOM_INIT = "random-init"


def missing(v) -> bool:
    """None or NaN: a number nothing measured."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def f3(v, digits: int = 3) -> str:
    return "n/a" if missing(v) else f"{v:.{digits}f}"


def plus_minus(m: dict, key: str) -> str:
    """`m[key] ± m[key_std]`, e.g. "0.836 ± 0.003"."""
    return f"{f3(m.get(key))} ± {f3(m.get(key + '_std'))}"


def count(v) -> str:
    return "n/a" if missing(v) else f"{int(v):,}"


def met(value, threshold, lower_is_better: bool = False) -> bool:
    """Whether a measured value reaches its target: at least the threshold, or at most it when lower is better."""
    return bool(value <= threshold) if lower_is_better else bool(value >= threshold)


def status(value, threshold, lower_is_better: bool = False) -> str:
    if missing(value):
        return "not run"
    return "✓ met" if met(value, threshold, lower_is_better) else "✗ not met"


def pct(v, digits: int = 1) -> str:
    """A share as a percentage: 0.9381 -> "93.8 %"."""
    return "n/a" if missing(v) else f"{100 * v:.{digits}f} %"
