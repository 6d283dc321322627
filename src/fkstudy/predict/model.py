"""Predict product categories from raw inputs with a fusion bundle.

Input: a DataFrame with columns `name`, `description` (optional) and `image` (optional: a path to a
photo on this machine; empty / missing = text only). Output: one row per input with the top-k
categories and probabilities (`category_1`, `probability_1`, ...; temperature-scaled as calibrated out of
fold by the fusion stage), `confident` (the top probability reaches the threshold that gave the target
accuracy out of fold: answer automatically, else route to a human), `modality` ("text+image", "text",
or "name": a name alone, no description and no photo, answered by the name head fitted on name-only
embeddings), a `note` saying why a modality was not used and an `error`: "" when the row was predicted,
else a short reason (both texts empty, "image not found: photo.jpg", ...; the photo's base name only)
and no categories. A bad row never stops the others.

Features are rebuilt exactly as the pipeline made the training features, with the pipeline's own
functions: `select_text` + MiniLM (`text.features.bert`) or the packaged USE, `process_image`
(decode, EXIF, RGB, decompression-bomb guard, resize to the cached square) + the image set's torch backbone
(`image.torch_backbone`, through its registry spec), with the settings recorded in the feature files' meta.
Only torch runs here (no TensorFlow), so text and image share one process.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StudyError
from ..fusion_rules import expected_params, fusion_proba
from ..labels import proba_top
from .bundle import Bundle, load_bundle
from .encoders import TRANSFORMERS, ImageEncoder, TextEncoder, UnservableError, encoder_of  # noqa: F401

INPUT_COLUMNS = ("name", "description", "image")
ERROR_COLUMN = "error"          # "" when the row was predicted, else why not
TOP_K = 3


def servable_sets() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(text sets, image sets) the predictor can rebuild from raw inputs: the packaged sentence encoders
    (no fitted state) and the torch backbones of the image registry (a Keras one would put TensorFlow beside
    torch in one process)."""
    from ..image.registry import backbones
    from ..text.registry import TEXT

    text = tuple(n for n, e in TEXT.items() if e.function.startswith("fkstudy.text.encoders:"))
    return text, backbones("torch")


class PredictInputError(StudyError, ValueError):
    """An input row cannot be predicted (empty text, missing or unreadable image, bad columns)."""


def output_columns(top_k: int = TOP_K) -> list[str]:
    return [c for k in range(1, top_k + 1) for c in (f"category_{k}", f"probability_{k}")] + [
        "confident", "modality", "note", ERROR_COLUMN]


def check_servable(config: dict) -> None:
    """Refuse, with the reason and the fix, a bundle whose features cannot be made from raw inputs here."""
    from ..text.registry import TEXT

    t, i = config["text"], config["image"]
    TEXT_SETS, IMAGE_SETS = servable_sets()
    if t["set"] not in TEXT_SETS or t["params"].get("input") != "raw":
        raise UnservableError(f"fusion.text_set={t['set']!r} (input {t['params'].get('input')!r}) cannot be served: "
                              f"the predictor rebuilds raw-text encoders only ({', '.join(TEXT_SETS)}); "
                              "set fusion.text_set to one of them")
    if encoder_of(TEXT[t["set"]]) in TRANSFORMERS and t["params"].get("model_dir"):
        raise UnservableError(f"text_features.{t['set']}.model_dir is set: the served model uses the packaged "
                              "weights only (set it to \"\")")
    if encoder_of(TEXT[t["set"]]) == "use" and t["params"].get("tfhub_handle"):
        raise UnservableError("text_features.use.tfhub_handle is set: serving would need TensorFlow beside torch; "
                              "use the packaged USE (tfhub_handle: \"\")")
    n = config.get("name")
    if n and n.get("params") != expected_params(t["params"]):
        raise UnservableError(f"the name head's features ({n.get('set')}: {n.get('params')}) are not the text set's "
                              "encoder on the name alone: the predictor could not rebuild them; re-run the fusion stage")
    if i["set"] not in IMAGE_SETS:
        raise UnservableError(f"fusion.image_set={i['set']!r} cannot be served: the predictor runs torch backbones "
                              f"only ({', '.join(IMAGE_SETS)}); Keras ones would need TensorFlow in the same "
                              "process as torch (it segfaults)")


def raw_inputs(catalog: pd.DataFrame, image_dir) -> pd.DataFrame:
    """Catalog rows as the predictor's raw input: name, description and the photo's path ("" when the
    photo is missing)."""
    return pd.DataFrame({"name": catalog["name"], "description": catalog["description"],
                         "image": [str(Path(image_dir) / f) if s == "ok" else ""
                                   for f, s in zip(catalog["image"], catalog["image_status"])]})


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, str):
        raise PredictInputError(f"must be text, got {type(value).__name__}")
    return value.strip()


def normalise_input(frame) -> pd.DataFrame:
    """name / description / image as plain strings ("" = absent) and a per-row `error` ("" = usable).

    Only a problem with the whole input raises PredictInputError: not a table, unknown columns, neither
    `name` nor `description`, no rows. A row with both texts empty, or a value that is not text, gets
    its own error and the other rows are still predicted."""
    if isinstance(frame, dict):
        frame = pd.DataFrame([frame])
    if not isinstance(frame, pd.DataFrame):
        raise PredictInputError(f"input must be a DataFrame with columns {list(INPUT_COLUMNS)}, got {type(frame).__name__}")
    unknown = sorted(map(str, set(frame.columns) - set(INPUT_COLUMNS)))
    if unknown or "name" not in frame.columns and "description" not in frame.columns:
        raise PredictInputError(f"input columns must be among {list(INPUT_COLUMNS)} (name or description required), "
                                f"got {list(map(str, frame.columns))}")
    if frame.empty:
        raise PredictInputError("no input rows")
    cols: dict[str, list] = {c: [] for c in (*INPUT_COLUMNS, ERROR_COLUMN)}
    for r in range(len(frame)):
        row, problems = {}, []
        for c in INPUT_COLUMNS:
            try:
                row[c] = _text(frame[c].iloc[r]) if c in frame.columns else ""
            except PredictInputError as exc:
                row[c] = ""
                problems.append(f"{c} {exc}")
        if not problems and not row["name"] and not row["description"]:
            problems.append("name and description are both empty; give at least one of them")
        for c in INPUT_COLUMNS:
            cols[c].append(row[c])
        cols[ERROR_COLUMN].append("; ".join(problems))
    return pd.DataFrame(cols)


def image_error(exc) -> str:
    """A short message for an image that cannot be used: the reason and the file's base name only (no
    directory, no library detail that could carry a path: served responses must not show server paths)."""
    from ..image.preprocess import ImageDecodeError

    if not isinstance(exc, ImageDecodeError):
        return f"image unreadable ({type(exc).__name__})"
    name, detail = exc.path.name or str(exc.path), str(exc.detail)
    if exc.reason == "missing":
        return f"image not found: {name}"
    if exc.reason == "truncated":
        return f"image truncated: {name}"
    if exc.reason == "too_large":
        size = re.match(r"\d+x\d+ = \d+ px > max_pixels \d+", detail)
        return f"image too large: {name}" + (f" ({size.group(0)})" if size else "")
    if "permission denied" in detail.lower():
        return f"image not readable: {name} (permission denied)"
    if exc.reason == "unreadable" and "not a recognised image format" in detail:
        return f"not an image: {name}"
    return f"image unreadable: {name}"


def load_square(path, cache: dict, input_size: int | None, max_pixels: int) -> np.ndarray:
    """A photo as the features were made: decoded and squared as prep_images made the cache (`cache`: its size,
    aspect and jpeg_draft), then resized to the network's `input_size` (None: the cache's size). A missing or
    unreadable file is a PredictInputError with a short message (`image_error`)."""
    from ..image.cache import resized
    from ..image.preprocess import PrepConfig, process_image

    cfg = PrepConfig(size=cache["size"], aspect=cache["aspect"], max_pixels=max_pixels, jpeg_draft=cache["jpeg_draft"])
    try:
        square = process_image(path, cfg)[0]
    except Exception as exc:  # ImageDecodeError, or an exotic file: still a message naming it
        raise PredictInputError(image_error(exc)) from None
    return resized(square[None], int(input_size or cache["size"]))[0]


@dataclass
class Predictor:
    bundle: Bundle
    weights_dir: Path                 # holds the image backbone's weights file
    max_pixels: int = 40_000_000      # decompression-bomb guard, as data.max_image_pixels
    n_jobs: int = 1
    batch_size: int = 32

    @classmethod
    def from_paths(cls, bundle_dir, weights_dir, serving: dict | None = None) -> Predictor:
        bundle = load_bundle(bundle_dir)
        check_servable(bundle.config)
        s = serving or {}
        return cls(bundle, Path(weights_dir), int(s.get("max_pixels", 40_000_000)), int(s.get("n_jobs", 1)),
                   int(s.get("batch_size", 32)))

    # ---------------------------------------------------------------- features
    def __post_init__(self):
        self._text = TextEncoder(self.bundle.config, self.weights_dir, self.n_jobs)
        self._image = ImageEncoder(self.bundle.config, self.weights_dir, self.n_jobs, self.batch_size)

    def text_features(self, names, descriptions) -> np.ndarray:
        """The bundle's text set on raw names / descriptions (encoder loaded on first use, then kept)."""
        return self._text(names, descriptions)

    def image_features(self, images: np.ndarray) -> np.ndarray:
        """The bundle's image backbone on decoded photos (loaded on first use, weights checked, then kept)."""
        return self._image(images)

    def load_image(self, path) -> np.ndarray:
        """Decode + resize exactly as prep_images did; a missing or unreadable file is a PredictInputError
        with a short message (`image_error`)."""
        image = self.bundle.config["image"]
        return load_square(path, image["image_cache"], image.get("input_size"), self.max_pixels)

    def load_images(self, paths) -> np.ndarray:
        """Every photo of `paths`, stacked; the first one that fails raises PredictInputError."""
        return np.stack([self.load_image(p) for p in paths])

    # ---------------------------------------------------------------- predict
    def predict_proba(self, frame) -> tuple[np.ndarray, list[str], list[str], list[str]]:
        """(P [n, k] in `classes` order, NaN for a failed row; modality, note and error per row).

        A row fails alone (both texts empty, a photo that is missing or cannot be decoded): the others
        are still predicted. Only an unusable input as a whole raises PredictInputError."""
        x = normalise_input(frame)
        n, selected, models = len(x), self.bundle.selected, self.bundle.models
        error = list(x[ERROR_COLUMN])
        modality, note = [""] * n, [""] * n
        uses_image = selected["mode"] != "text"
        images = {}
        for r in range(n):
            if error[r] or not x.at[r, "image"]:
                continue
            if not uses_image:
                note[r] = "the selected model uses the text only; image not used"
                continue
            try:
                images[r] = self.load_image(x.at[r, "image"])
            except PredictInputError as exc:
                error[r] = str(exc)
        P = np.full((n, len(self.bundle.classes)), np.nan)
        ok = [r for r in range(n) if not error[r]]
        if not ok:
            return P, modality, note, error
        T = self.text_features(x["name"].iloc[ok].tolist(), x["description"].iloc[ok].tolist())
        P_ok = self.calibrated(proba_top(models["text"], T), "text")
        # a name alone (no description, no photo): the head fitted on name-only embeddings, when the bundle has one
        by_name = [i for i, r in enumerate(ok) if "name" in models and r not in images and
                   x.at[r, "name"] and not x.at[r, "description"]]
        if by_name:
            P_ok[by_name] = self.calibrated(proba_top(models["name"], T[by_name]), "name")  # a sub-category head: summed
        with_image = [i for i, r in enumerate(ok) if r in images]
        if with_image:
            I = self.image_features(np.stack([images[ok[i]] for i in with_image]))
            P_ok[with_image] = self.calibrated(fusion_proba(models, selected, T[with_image], I), "selected")
        P[ok] = P_ok
        for i, r in enumerate(ok):
            if r in images:
                modality[r] = "image" if selected["mode"] == "image" else "text+image"
            elif i in by_name:
                modality[r] = "name"
                note[r] = note[r] or "name only (no description, no image): name head"
            else:
                modality[r] = "text"
                note[r] = note[r] or "no image given: text head only"
        return P, modality, note, error

    def calibration(self, role: str) -> dict | None:
        """What the fusion stage fitted out of fold for `role` ("selected": the bundle's model on text+photo,
        "text": its text head alone, "name": its name head): temperature and answer threshold; None for an
        older bundle."""
        return (self.bundle.config.get("calibration") or {}).get(role)

    def calibrated(self, P: np.ndarray, role: str) -> np.ndarray:
        """The probabilities with `role`'s temperature (unchanged when the bundle has none)."""
        from ..evaluate.calibration import with_temperature

        cal = self.calibration(role)
        return with_temperature(P, cal["temperature"]) if cal else P

    def threshold(self, modality: str) -> float:
        """The confidence at or above which a prediction of this modality is answered automatically: the
        lowest that reached the target accuracy out of fold (NaN when the bundle has none)."""
        cal = self.calibration(modality if modality in ("text", "name") else "selected")
        return float(cal["threshold"]) if cal else float("nan")

    def predict(self, frame, top_k: int = TOP_K) -> pd.DataFrame:
        """One output row per input row, in order: top-k categories and probabilities, modality, note and
        `error` ("" when predicted; categories "" and probabilities NaN when not)."""
        P, modality, note, error = self.predict_proba(frame)
        classes = np.asarray(self.bundle.classes)
        k = min(top_k, len(classes))
        failed = np.isnan(P).any(axis=1)
        order = np.argsort(-np.nan_to_num(P, nan=0.0), axis=1, kind="stable")[:, :k]
        out = {}
        for j in range(k):
            out[f"category_{j + 1}"] = np.where(failed, "", classes[order[:, j]]).tolist()
            out[f"probability_{j + 1}"] = np.take_along_axis(P, order[:, j:j + 1], axis=1)[:, 0].astype(float)
        # confident: the top probability reaches the threshold chosen out of fold for the target accuracy
        # (fusion.calibration.target_accuracy); the others are for a human to check
        top = np.nan_to_num(P.max(axis=1, initial=-1.0, where=~np.isnan(P)), nan=-1.0)
        out["confident"] = [bool(not failed[r] and top[r] >= self.threshold(modality[r])) for r in range(len(P))]
        out["modality"], out["note"], out[ERROR_COLUMN] = modality, note, error
        return pd.DataFrame(out)
