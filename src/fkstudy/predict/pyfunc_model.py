"""The MLflow pyfunc model, logged as "models from code" (this file is the model: nothing is pickled).

Artifacts (see `registry.ARTIFACTS`): `bundle` (models/fusion/), `weights` (the image backbone's
weights file) and `serving` (JSON: max_pixels, n_jobs, batch_size). The fkstudy package travels in the
model's `code/` folder, so serving it (README "Predict") and loading it with MLflow's pyfunc loader
work from the registry alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class FlipkartFusionModel(PythonModel):
    """DataFrame(name, description, image path) -> top-3 categories with probabilities."""

    def load_context(self, context):
        from fkstudy.predict.model import Predictor

        art = context.artifacts
        serving = json.loads(Path(art["serving"]).read_text(encoding="utf-8"))
        self.predictor = Predictor.from_paths(art["bundle"], Path(art["weights"]).parent, serving)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.predictor.predict(model_input)


mlflow.models.set_model(FlipkartFusionModel())
