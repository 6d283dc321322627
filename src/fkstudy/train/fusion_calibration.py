"""Calibration of the fused model's answers: temperature scaling and the answer threshold of the selected
candidate, of the text head alone (a product without a photo) and of the name-only head (a product given by its
name alone), each fitted on its out-of-fold train+val probabilities (fkstudy.train.cv) and scored on test
(the maths is fkstudy.evaluate.calibration). Pure functions."""
from __future__ import annotations

import numpy as np

from ..labels import top_classes
from .fusion import FusionFit


def calibrate(fit: FusionFit, ev: dict, target_accuracy: float, bins: int, name: tuple | None = None
              ) -> tuple[dict, dict]:
    """Temperature scaling + answer threshold of the selected model, of the text head alone (what a
    product without a photo gets) and of the name head (`name`: (name_head.NameFit, name_head.evaluate), what a
    product given by its name alone gets), each fitted on its out-of-fold train+val probabilities, scored on test.
    Returns ({"selected"|"text"|"name": metrics}, {"selected"|"text"|"name": tables})."""
    from ..evaluate.calibration import calibrate as calibrate_proba

    model_classes = top_classes(fit.heads["text"].model.classes_)

    def index(labels):
        return np.array([model_classes.index(c) for c in labels])

    runs = {role: (fit.oof[cand], fit.y, ev["proba"][cand], ev["y_test"])
            for role, cand in (("selected", fit.selected["name"]), ("text", "text"))}
    if name is not None:
        nf, nev = name
        runs["name"] = (nf.oof, nf.y, nev["proba"], nev["y_test"])
    metrics, tables = {}, {}
    for role, (oof, oof_labels, test_p, test_labels) in runs.items():
        metrics[role], tables[role] = calibrate_proba(oof, index(oof_labels), test_p, index(test_labels),
                                                      target_accuracy, bins)
    return metrics, tables
