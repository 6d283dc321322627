"""The MLflow pyfunc model, logged as "models from code" (this file is the model: nothing is pickled).

Artifacts (see `registry.ARTIFACTS`): `bundle` (models/fusion/), `weights` (the image backbone's
weights file) and `serving` (JSON: max_pixels, n_jobs, batch_size). The fkstudy package travels in the
model's `code/` folder, so serving it (docs/serving.md) and loading it with MLflow's pyfunc loader
work from the registry alone.

One output row per input row: a bad row (both texts empty, a photo missing or not an image) gets its
`error` and no categories, the others are predicted, and the request succeeds (HTTP 200 from MLflow's
scoring server). Before, `normalise_input` raised for the whole frame and MLflow's scoring server
answered any exception from `predict` with HTTP 400 for every row plus the Python traceback (with the
server's file paths). A problem with the request as a whole (no name/description column) is an
MlflowException with our one-line message (HTTP 400, no traceback); an unexpected failure is logged
on the server and answered with a short message (HTTP 500, no traceback).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

log = logging.getLogger("fkstudy.serving")


def jsonable(out: pd.DataFrame) -> pd.DataFrame:
    """NaN probabilities of failed rows as None, so the server's JSON says null (NaN is not JSON)."""
    probs = [c for c in out.columns if c.startswith("probability_")]
    if probs and out[probs].isna().to_numpy().any():
        out = out.copy()
        for c in probs:
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


class FlipkartFusionModel(PythonModel):
    """DataFrame(name, description, image path) -> top-3 categories with probabilities, per-row errors."""

    def load_context(self, context):
        from fkstudy.predict.model import Predictor

        art = context.artifacts
        serving = json.loads(Path(art["serving"]).read_text(encoding="utf-8"))
        self.predictor = Predictor.from_paths(art["bundle"], Path(art["weights"]).parent, serving)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

        from fkstudy.errors import one_line
        from fkstudy.predict.model import PredictInputError

        try:
            return jsonable(self.predictor.predict(model_input))
        except PredictInputError as exc:  # the input as a whole: one line, no traceback in the response
            raise MlflowException(one_line(exc), error_code=INVALID_PARAMETER_VALUE) from None
        except Exception as exc:  # a bug: the traceback stays in the server's log, not in the response
            log.exception("prediction failed")
            raise MlflowException(f"internal error while predicting ({type(exc).__name__}); see the server log",
                                  error_code=INTERNAL_ERROR) from None


mlflow.models.set_model(FlipkartFusionModel())
