"""Small builders shared by the unit tests."""
from __future__ import annotations

from fkstudy.train.heads import HeadParams

HEAD_DEFAULTS = {"type": "logreg", "scale": "standard", "C": [1.0], "hidden": [16], "alpha": 1e-3, "lr": 1e-2,
                 "batch_size": 32, "max_iter": 500, "patience": 5}


def head(**overrides) -> HeadParams:
    """A head config: every field is required, so the ones a test does not care about get fixed values."""
    return HeadParams.model_validate({**HEAD_DEFAULTS, **overrides})
