"""The fused model's rules, shared by its training (fkstudy.train.fusion*, fkstudy.train.name_head) and its
serving (fkstudy.predict): which heads a candidate runs, the features each head takes, and how their class
probabilities are pooled into one answer.

A candidate is {"name", "mode", "text_weight"}: mode "text" or "image" (one head alone), "concat" (one head on
[text | image]) or a pooling rule of the text and image heads' probabilities at text weight w. The name-only
head takes the text set's encoder on the product name alone (`expected_params`).

Top level, not in train/ nor predict/: the served model must not import training code (nor its
scikit-learn model selection), and training must not import the server; both import these few numpy
functions. Nothing here fits anything.
"""
from __future__ import annotations

import numpy as np

from .labels import proba_top, top_classes

PROBA_RULES = ("average_proba", "geometric_proba")
MODES = ("concat",) + PROBA_RULES          # the fused modes besides a modality alone
SINGLE = ("text", "image")


def combine_proba(p_text, p_image, text_weight: float, rule: str) -> np.ndarray:
    """Pool two [n, k] probability matrices (same class order).

    average_proba:   w * P_text + (1 - w) * P_image
    geometric_proba: P_text^w * P_image^(1-w), renormalised (log-linear pooling: a confident modality
                     can veto a class the other one only half-believes)
    w = 1 gives the text head, w = 0 the image head.
    """
    pt, pi = np.asarray(p_text, dtype=np.float64), np.asarray(p_image, dtype=np.float64)
    if pt.shape != pi.shape:
        raise ValueError(f"text probabilities {pt.shape} and image probabilities {pi.shape} differ in shape")
    w = float(text_weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"text weight must be in [0, 1], got {w}")
    if rule == "average_proba":
        return w * pt + (1.0 - w) * pi
    if rule == "geometric_proba":
        z = w * np.log(np.clip(pt, 1e-12, 1.0)) + (1.0 - w) * np.log(np.clip(pi, 1e-12, 1.0))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"pooling rule must be one of {PROBA_RULES}, got {rule!r}")


def heads_needed(candidate: dict) -> tuple[str, ...]:
    """The heads a candidate runs: its own for a modality alone or concat, text and image for a pooling."""
    mode = candidate["mode"]
    return (mode,) if mode in SINGLE + ("concat",) else SINGLE


def concat_features(T, I) -> np.ndarray:
    """The concat head's input: [text | image] as float64 (its pipeline scales each block itself)."""
    return np.hstack([np.asarray(T, dtype=np.float64), np.asarray(I, dtype=np.float64)])


def head_probas(models: dict, T, I, names=None) -> dict:
    """{head name: P [n, k]} for the fitted sklearn pipelines `models` (text / image / concat), at the top level:
    a head fitted on sub-categories has its columns summed per top category (fkstudy.labels)."""
    out, classes = {}, None
    for name in names or models:
        X = T if name == "text" else I if name == "image" else concat_features(T, I)
        m = models[name]
        out[name] = proba_top(m, np.asarray(X, dtype=np.float64))
        if classes is not None and top_classes(m.classes_) != classes:
            raise ValueError(f"fusion head {name!r} has classes {top_classes(m.classes_)}, the others {classes}")
        classes = top_classes(m.classes_)
    return out


def candidate_proba(candidate: dict, probas: dict) -> np.ndarray:
    """A candidate's probabilities from its heads' (`head_probas`)."""
    mode = candidate["mode"]
    if mode in probas:
        return probas[mode]
    return combine_proba(probas["text"], probas["image"], candidate["text_weight"], mode)


def fusion_proba(models: dict, candidate: dict, T, I) -> np.ndarray:
    """Class probabilities of one candidate (the deployed model uses the selected one)."""
    return candidate_proba(candidate, head_probas(models, T, I, heads_needed(candidate)))


def expected_params(text_params: dict) -> dict:
    """The params the name-only head's features must have: the text set's, on the name field (the served model
    encodes a name-only product with the text set's encoder)."""
    return {**text_params, "field": "name"}
