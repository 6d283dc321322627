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


def secs(v) -> str:
    return "n/a" if missing(v) else f"{v:.1f} s"


def count(v) -> str:
    return "n/a" if missing(v) else f"{int(v):,}"


def status(value, threshold) -> str:
    if missing(value):
        return "not run"
    return "✓ met" if value >= threshold else "✗ not met"
