"""Representations over a catalogue: a text encoder or a torch backbone of the registries on every product of a
products CSV, chunk by chunk, into the study's feature-file contract (fkstudy.files: X float32, ids, meta), rows
in id order.

The workers are the served model's encoders (fkstudy.predict.encoders), loaded once per worker: the catalogue's
features are what `python -m fkstudy predict` computes for a product, from the same raw fields (name /
description as the method's `field`; the photo decoded and squared as prep_images does, then resized to the
network's input). Within a chunk the encoders batch as the pipeline's stages do (texts sorted by token length;
photos in file order), so a chunk's features depend only on the chunk: both engines give the same bytes. A
record that cannot be read, and a product whose photo is missing or unreadable (image jobs), has no row; it is
listed with its line and reason in the job's failures.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import files, paths
from ..errors import StudyError
from . import catalog, engine, jobs
from .catalog import products

TEXT, IMAGE = "text", "image"


def text_methods() -> tuple[str, ...]:
    """Text representations a catalogue job can compute: the pretrained encoders on raw text (nothing fitted)."""
    from ..text.registry import pretrained_encoders

    return pretrained_encoders()


def image_methods() -> tuple[str, ...]:
    """Image representations a catalogue job can compute: the torch backbones (one framework per process)."""
    from ..image.registry import backbones

    return backbones("torch")


def check_method(modality: str, method: str, p) -> None:
    """Refuse, naming the fix, a method this path cannot compute from a products CSV."""
    allowed = text_methods() if modality == TEXT else image_methods()
    if method not in allowed:
        raise StudyError(f"catalog_{modality}@{method}: not available on the catalogue path; {modality} methods: "
                         f"{', '.join(allowed)}" + (" (Keras backbones would need TensorFlow beside torch)"
                                                     if modality == IMAGE else " (pretrained encoders on raw text)"))
    if modality == TEXT:
        if p.input != "raw":
            raise StudyError(f"text_features.{method}.input={p.input!r}: the catalogue path encodes raw text only")
        if getattr(p, "tfhub_handle", "") or (method != "bert" and getattr(p, "model_dir", "")):
            raise StudyError(f"text_features.{method}: the catalogue path uses the packaged weights only "
                             "(model_dir / tfhub_handle must be \"\")")


def probe_weights(method: str, weights_dir: str) -> dict:
    """The weights record a backbone's workers must load (sha256 checked by each): real weights only, a missing
    file is an error naming it and how to provide it (random-init features of a catalogue would mean nothing)."""
    from ..image.registry import weight_spec
    from ..image.weights import MissingWeightsError, probe

    spec = weight_spec(method)
    rec = probe(spec, weights_dir)
    if not rec.get("pretrained"):
        raise MissingWeightsError(spec.missing_message(weights_dir).split("\nLooked")[0]
                                    + " (the catalogue path runs real weights only)")
    return {k: rec[k] for k in ("model", "weights", "source", "sha256")}


class TextWorker:
    """A text set's encoder, loaded on first use and kept: chunk -> ids and features of its readable records."""

    def __init__(self, method: str, params: dict, weights_dir: str, n_jobs: int):
        from ..predict.encoders import TextEncoder

        self.encoder = TextEncoder({"text": {"set": method, "params": params}}, Path(weights_dir), n_jobs)

    def __call__(self, payload: dict) -> dict:
        prods = products(payload)
        ok = [i for i, e in enumerate(prods.errors) if not e]
        f = prods.frame
        X = (self.encoder(f["name"].iloc[ok].tolist(), f["description"].iloc[ok].tolist()) if ok
             else np.zeros((0, 0), np.float32))
        return _result(prods, ok, np.asarray(X, np.float32), {i: e for i, e in enumerate(prods.errors) if e})


class ImageWorker:
    """A torch backbone (weights checked against `settings["sha256"]`), loaded on first use and kept: chunk -> ids
    and features of the products whose photo decodes."""

    def __init__(self, method: str, settings: dict, cache: dict, input_size: int, max_pixels: int, weights_dir: str,
                 n_jobs: int, batch_size: int):
        from ..predict.encoders import ImageEncoder

        self.cache, self.input_size, self.max_pixels = cache, input_size, max_pixels
        self.encoder = ImageEncoder({"image": {"set": method, **settings}}, Path(weights_dir), n_jobs, batch_size)

    def __call__(self, payload: dict) -> dict:
        from ..predict.model import PredictInputError, load_square

        prods = products(payload)
        ok, images, failed = [], [], {}
        for i, (error, path) in enumerate(zip(prods.errors, prods.frame["image"])):
            if error or not path:
                failed[i] = error or "no image"
                continue
            try:
                images.append(load_square(path, self.cache, self.input_size, self.max_pixels))
                ok.append(i)
            except PredictInputError as exc:
                failed[i] = str(exc)
        X = self.encoder(np.stack(images)) if images else np.zeros((0, 0), np.float32)
        return _result(prods, ok, np.asarray(X, np.float32), failed)


def _result(prods, ok: list[int], X: np.ndarray, failed: dict[int, str]) -> dict:
    ids = prods.frame["id"].str.strip().tolist() if prods.has_id else []
    return {"ids": json.dumps([ids[i] for i in ok]), "X": np.ascontiguousarray(X, np.float32).tobytes(),
            "dim": int(X.shape[1]) if X.ndim == 2 and len(ok) else 0,
            "failed": json.dumps([[prods.lines[i], ids[i] if ids else "", why] for i, why in sorted(failed.items())])}


def assemble(results) -> tuple[np.ndarray, np.ndarray, list[list]]:
    """(X float32 [n, d], ids [n]) in id order, and the failed records ([line, id, reason]), from the workers'
    results in chunk order."""
    blocks, ids, failed, dim = [], [], [], 0
    for r in results:
        chunk_ids = json.loads(r["ids"])
        failed += json.loads(r["failed"])
        if not chunk_ids:
            continue
        if dim and r["dim"] != dim:
            raise StudyError(f"chunk {r['chunk']}: {r['dim']}-d features, the others are {dim}-d")
        dim = r["dim"]
        blocks.append(np.frombuffer(r["X"], dtype=np.float32).reshape(len(chunk_ids), dim))
        ids += chunk_ids
    if not ids:
        raise StudyError(f"no product could be encoded ({len(failed)} failed"
                         + (f"; first: line {failed[0][0]}: {failed[0][2]}" if failed else "") + ")")
    ids_arr = np.asarray(ids)
    order = np.argsort(ids_arr, kind="stable")
    return np.concatenate(blocks)[order], ids_arr[order], failed


def features_job(stage, modality: str, method: str, worker: type, args: tuple, meta: dict, n_jobs: int) -> dict:
    """catalog_<modality>@<method>: every product of the catalogue through `worker` -> the feature file (rows in
    id order), the failures CSV and the metrics."""
    s = stage.params.scale
    p = jobs.plan(stage, unique_ids=True)
    read = functools.partial(catalog.read_chunk, p)
    with stage.timed(f"{modality} {method} on {s.engine}", "job_seconds"):
        X, ids, failed = assemble(engine.run(len(p.chunks), read, worker, args, engine.Settings.from_params(s, n_jobs)))
    files.save_features(paths.catalog_features(modality, method), X, ids,
                        {**meta, "catalog": {"rows": p.rows, "chunk_rows": s.chunk_rows}})
    files.write_csv(paths.catalog_failures(modality, method),
                    pd.DataFrame(failed, columns=["line", "id", "reason"]))
    metrics = {"rows": p.rows, "encoded": int(len(ids)), "failed": len(failed), "dim": int(X.shape[1]),
               "chunks": len(p.chunks)}
    files.write_json(paths.metrics(f"catalog_{modality}", method), metrics)
    jobs.write_timings(stage, f"catalog_{modality}", method, p.rows)
    return metrics
