"""MLflow logging for the heads: metric names MLflow accepts, per-epoch curves, models with a signature."""
from __future__ import annotations

import re

import numpy as np

from fkstudy.tracking import flatten

_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")


def metric_key(key: str) -> str:
    """MLflow allows alphanumerics, _ - . / and space: 'Kitchen & Dining' -> 'Kitchen and Dining'."""
    return _BAD.sub("_", key.replace("&", "and"))


def log_metrics(metrics: dict, prefix: str = "") -> None:
    import mlflow

    flat = {metric_key(prefix + k): float(v) for k, v in flatten(metrics).items()
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}
    if flat:
        mlflow.log_metrics(flat)


def log_curve(curve, prefix: str = "") -> None:
    """One MLflow metric per curve column, step = epoch, sent in one batch (one call per epoch
    made a 300-epoch run spend minutes in SQLite writes on this shared machine)."""
    import time

    import mlflow
    from mlflow.entities import Metric

    if curve is None or curve.empty:
        return
    now = int(time.time() * 1000)
    metrics = [Metric(metric_key(prefix + k), float(v), now, int(e))
               for k in curve.select_dtypes("number").columns if k != "epoch"
               for e, v in zip(curve["epoch"], curve[k])]
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for i in range(0, len(metrics), 1000):  # MLflow's per-request limit
        client.log_batch(run_id, metrics=metrics[i:i + 1000])


def log_model(model, X_sample: np.ndarray, name: str = "model") -> None:
    """Log a fitted sklearn model (skops format, no pickle) with an input/output signature.

    MLflow 3 names the model with `name=` (`artifact_path=` is deprecated). pip requirements are
    given so MLflow does not spend a subprocess inferring them.
    """
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    X_sample = np.asarray(X_sample, dtype=np.float64)
    signature = infer_signature(X_sample, model.predict_proba(X_sample))
    mlflow.sklearn.log_model(model, name=name, signature=signature, serialization_format="skops",
                             skops_trusted_types=sklearn_types(model),
                             pip_requirements=[f"scikit-learn=={sklearn.__version__}", "skops"])


def sklearn_types(model) -> list[str]:
    """The scikit-learn internals skops does not trust by default (e.g. the MLP's AdamOptimizer);
    anything from outside scikit-learn stays untrusted and makes log_model fail."""
    from skops.io import dumps, get_untrusted_types

    return [t for t in get_untrusted_types(data=dumps(model)) if t.startswith("sklearn.")]


def log_keras_model(model, X_sample: np.ndarray, name: str = "model") -> None:
    """Log a Keras model (native .keras format) with an input/output signature."""
    import keras
    import mlflow
    from mlflow.models import infer_signature

    X_sample = np.asarray(X_sample, dtype=np.float32)
    signature = infer_signature(X_sample, np.asarray(model.predict(X_sample, verbose=0)))
    mlflow.keras.log_model(model, name=name, signature=signature,
                           pip_requirements=[f"keras=={keras.__version__}", "tensorflow"])
