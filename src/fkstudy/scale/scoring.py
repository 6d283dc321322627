"""Batch scoring of a catalogue with the registered model: the output of `python -m fkstudy predict --input
<catalogue> --output <file>` (same columns, same per-row errors, same bytes), computed chunk by chunk, streamed.

The driver resolves `models:/<name>@<alias>` to one version once (every worker scores with that version, even if
the alias moves during the job), downloads it and hands it to the workers as one zip archive (no worker needs
access to the tracking store). A worker unpacks it once per machine, loads the predictor once, and scores a chunk
with `predict_products` (batches of `scale.batch_size` readable records, as `predict --batch-size`); a chunk
holds whole batches, so the batches are the ones `predict --input` makes on the whole file. It returns the
chunk's CSV lines (pandas' `to_csv`, as `predict` writes them); the driver appends them in order to one file
that replaces the output only when complete.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

from .. import files, paths
from . import catalog, engine, jobs
from .catalog import products


def resolve(name: str, alias: str) -> str:
    """The version `models:/name@alias` points at now (RegistryError naming the fix when there is none)."""
    import mlflow
    from mlflow import MlflowClient

    from .. import tracking
    from ..predict.registry import RegistryError, model_uri

    mlflow.set_tracking_uri(tracking.tracking_uri())
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistryError(f"model {model_uri(name, alias)} not found in the tracking store ({first}); create it with "
                            "`dvc repro register`") from None


def model_archive(name: str, version: str) -> bytes:
    """models:/name/version (MLmodel, artifacts, code) as one zip archive, entries sorted: the same bytes for the
    same model."""
    from ..predict.registry import download

    with tempfile.TemporaryDirectory(prefix="fkstudy-model-") as tmp:
        root = download(f"models:/{name}/{version}", tmp)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            for f in sorted(p for p in root.rglob("*") if p.is_file()):
                z.writestr(zipfile.ZipInfo(f.relative_to(root).as_posix(), files.FIXED_ZIP_TIME), f.read_bytes())
        return out.getvalue()


def serving(archive: bytes) -> dict:
    """The model's serving settings (n_jobs: the threads its encoders use, batch_size, max_pixels)."""
    import yaml

    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        conf = yaml.safe_load(z.read("MLmodel"))
        arts = ((conf.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
        if "serving" not in arts:
            from ..predict.registry import RegistryError

            raise RegistryError("the registered model has no serving settings: not a fusion model of this study")
        return json.loads(z.read(arts["serving"]["path"]))


def unpacked(archive: bytes) -> Path:
    """The archive's model directory on this machine (unpacked once per content, shared by the workers here)."""
    digest = hashlib.sha256(archive).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"fkstudy-model-{digest}"
    if not (target / "MLmodel").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=f".fkstudy-model-{digest}-", dir=target.parent))
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            z.extractall(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another worker on this machine was first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return target


class Scorer:
    """The registered model's predictor, loaded once: chunk -> its rows of the predictions CSV."""

    def __init__(self, archive: bytes, top_k: int, batch_size: int):
        from ..predict.registry import predictor_from_model_dir

        self.predictor = predictor_from_model_dir(unpacked(archive))
        self.top_k, self.batch_size = top_k, batch_size

    def __call__(self, payload: dict) -> dict:
        from ..predict.batch import predict_products

        out = predict_products(self.predictor, products(payload), top_k=self.top_k, batch_size=self.batch_size)
        failed = out["error"] != ""
        summary = {"modality": dict(Counter(out.loc[~failed, "modality"])),
                   "category_1": dict(Counter(out.loc[~failed, "category_1"])),
                   "confident": int(out.loc[~failed, "confident"].sum())}
        return {"header": out.iloc[:0].to_csv(index=False), "rows": len(out), "failed": int(failed.sum()),
                "csv": out.to_csv(index=False, header=False, float_format="%.6f"), "summary": json.dumps(summary)}


def write(results, path: str | Path) -> dict:
    """The chunks' CSV text appended in order into `path` (atomically: the old file stays until the last chunk);
    returns the totals (rows, failed, by modality / first category, confident)."""
    totals = {"rows": 0, "failed": 0, "confident": 0, "modality": Counter(), "category_1": Counter()}
    with files.atomic_path(path, keep_suffix=False) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        for i, r in enumerate(results):
            if i == 0:
                fh.write(r["header"])
            fh.write(r["csv"])
            s = json.loads(r["summary"])
            totals["rows"] += r["rows"]
            totals["failed"] += r["failed"]
            totals["confident"] += s["confident"]
            totals["modality"].update(s["modality"])
            totals["category_1"].update(s["category_1"])
        fh.flush()
    return {**totals, "modality": dict(sorted(totals["modality"].items())),
            "category_1": dict(sorted(totals["category_1"].items()))}


def scoring_job(stage, name: str, alias: str) -> dict:
    """score_catalog@<alias>: the catalogue through models:/<name>@<alias> -> the predictions CSV and metrics."""
    s = stage.params.scale
    version = resolve(name, alias)
    p = jobs.plan(stage, unique_ids=False)
    with stage.timed("model download", "model_seconds"):
        archive = model_archive(name, version)
    threads = int(serving(archive).get("n_jobs", 1))   # the model's encoders use its own thread count
    engine.log.info("models:/%s@%s = version %s (%.1f MB, %d threads)", name, alias, version, len(archive) / 2 ** 20,
                    threads)
    read = functools.partial(catalog.read_chunk, p)
    if s.engine == "local":  # this process runs the model: the thread counts a Ray worker gets (engine.worker_env)
        from ..runtime import pin_threads

        pin_threads(threads)
    with stage.timed(f"scoring on {s.engine}", "job_seconds"):
        results = engine.run(len(p.chunks), read, Scorer, (archive, s.top_k, s.batch_size),
                             engine.Settings.from_params(s, threads))
        totals = write(results, paths.catalog_predictions(alias))
    metrics = {"model": f"models:/{name}/{version}", "alias": alias, "chunks": len(p.chunks), **totals}
    files.write_json(paths.metrics("score_catalog", alias), metrics)
    jobs.write_timings(stage, "score_catalog", alias, p.rows)
    return metrics
