"""Predict product categories from raw inputs with a fusion bundle.

Input: a DataFrame with columns `name`, `description` (optional) and `image` (optional: a path to a
photo on this machine; empty / missing = text only). Output: one row per input with the top-k
categories and probabilities (`category_1`, `probability_1`, ...), `modality` ("text+image" or
"text") and a `note` saying why a modality was not used.

Features are rebuilt exactly as the pipeline made the training features, with the pipeline's own
functions: `select_text` + MiniLM (`text.features.bert`) or the packaged USE, `process_image`
(decode, EXIF, RGB, decompression-bomb guard, resize to the cached square) + EfficientNet-Lite0
(`image.deep.extract_lite0`), with the settings recorded in the feature files' meta. Only torch runs
here (no TensorFlow), so text and image share one process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..train import fusion as F
from .bundle import Bundle, load_bundle

INPUT_COLUMNS = ("name", "description", "image")
TEXT_SETS = ("bert", "use")              # raw-text encoders that ship with their packages
IMAGE_SETS = ("efficientnet_lite0",)     # torch backbones (Keras ones would put TF beside torch)
TOP_K = 3


class PredictInputError(ValueError):
    """An input row cannot be predicted (empty text, missing or unreadable image, bad columns)."""


class UnservableError(ValueError):
    """The bundle's feature sets cannot be rebuilt from raw inputs by this predictor."""


def output_columns(top_k: int = TOP_K) -> list[str]:
    return [c for k in range(1, top_k + 1) for c in (f"category_{k}", f"probability_{k}")] + ["modality", "note"]


def check_servable(config: dict) -> None:
    """Refuse, with the reason and the fix, a bundle whose features cannot be made from raw inputs here."""
    t, i = config["text"], config["image"]
    if t["set"] not in TEXT_SETS or t["params"].get("input") != "raw":
        raise UnservableError(f"fusion.text_set={t['set']!r} (input {t['params'].get('input')!r}) cannot be served: "
                              f"the predictor rebuilds raw-text encoders only ({', '.join(TEXT_SETS)}); "
                              "set fusion.text_set to one of them")
    if t["set"] == "bert" and t["params"].get("model_dir"):
        raise UnservableError("text_features.bert.model_dir is set: the served model uses the packaged "
                              "all-MiniLM-L6-v2 only (set it to \"\")")
    if t["set"] == "use" and t["params"].get("tfhub_handle"):
        raise UnservableError("text_features.use.tfhub_handle is set: serving would need TensorFlow beside torch; "
                              "use the packaged USE (tfhub_handle: \"\")")
    if i["set"] not in IMAGE_SETS:
        raise UnservableError(f"fusion.image_set={i['set']!r} cannot be served: the predictor runs torch backbones "
                              f"only ({', '.join(IMAGE_SETS)}); Keras ones would need TensorFlow in the same "
                              "process as torch (it segfaults)")


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, str):
        raise PredictInputError(f"text must be a string, got {type(value).__name__} {value!r}")
    return value.strip()


def normalise_input(frame) -> pd.DataFrame:
    """name / description / image as plain strings ("" = absent); clear errors for bad input."""
    if isinstance(frame, dict):
        frame = pd.DataFrame([frame])
    if not isinstance(frame, pd.DataFrame):
        raise PredictInputError(f"input must be a DataFrame with columns {list(INPUT_COLUMNS)}, got {type(frame).__name__}")
    unknown = sorted(set(frame.columns) - set(INPUT_COLUMNS))
    if unknown or "name" not in frame.columns and "description" not in frame.columns:
        raise PredictInputError(f"input columns must be among {list(INPUT_COLUMNS)} (name or description required), "
                                f"got {list(frame.columns)}")
    if frame.empty:
        raise PredictInputError("no input rows")
    out = pd.DataFrame({c: [_text(v) for v in frame[c]] if c in frame.columns else [""] * len(frame)
                        for c in INPUT_COLUMNS})
    empty = out.index[(out["name"] == "") & (out["description"] == "")].tolist()
    if empty:
        where = "" if len(out) == 1 else f"row(s) {empty[:5]}: "
        raise PredictInputError(f"{where}name and description are both empty; give at least one of them")
    return out


@dataclass
class Predictor:
    bundle: Bundle
    weights_dir: Path                 # holds the image backbone's weights file
    max_pixels: int = 40_000_000      # decompression-bomb guard, as data.max_image_pixels
    n_jobs: int = 1
    batch_size: int = 32

    @classmethod
    def from_paths(cls, bundle_dir, weights_dir, serving: dict | None = None) -> "Predictor":
        bundle = load_bundle(bundle_dir)
        check_servable(bundle.config)
        s = serving or {}
        return cls(bundle, Path(weights_dir), int(s.get("max_pixels", 40_000_000)), int(s.get("n_jobs", 1)),
                   int(s.get("batch_size", 32)))

    # ---------------------------------------------------------------- features
    def text_features(self, names, descriptions) -> np.ndarray:
        from ..text import clean
        from ..text import features as tf

        t = self.bundle.config["text"]
        docs = [clean.select_text(n, d, t["params"]["field"]) for n, d in zip(names, descriptions)]
        X, _ = (tf.bert if t["set"] == "bert" else tf.use)(docs, t["params"], self.n_jobs)
        return X

    def load_images(self, paths) -> np.ndarray:
        """Decode + resize exactly as prep_images did; a missing or unreadable file is a PredictInputError."""
        from ..image.preprocess import ImageDecodeError, PrepConfig, process_image

        cache = self.bundle.config["image"]["image_cache"]
        cfg = PrepConfig(size=cache["size"], aspect=cache["aspect"], max_pixels=self.max_pixels,
                         jpeg_draft=cache["jpeg_draft"])
        out = []
        for p in paths:
            try:
                out.append(process_image(p, cfg)[0])
            except ImageDecodeError as exc:
                raise PredictInputError(f"image {exc.path}: {exc.reason} ({exc.detail})") from None
            except Exception as exc:  # an exotic file: still a message naming it
                raise PredictInputError(f"image {p}: unreadable ({type(exc).__name__}: {exc})") from None
        return np.stack(out)

    def image_features(self, images: np.ndarray) -> np.ndarray:
        from ..image import deep

        i = self.bundle.config["image"]
        policy = deep.WeightsPolicy(dir=str(self.weights_dir), allow_random_init=False, allow_download=False)
        X, rec = deep.extract_lite0(images, batch_size=self.batch_size, normalization=i["normalization"],
                                    policy=policy, n_jobs=self.n_jobs)
        if i.get("sha256") and rec.get("sha256") != i["sha256"]:
            raise UnservableError(f"{rec.get('source')}: EfficientNet-Lite0 weights differ from those the training "
                                  f"features were made with (sha256 {rec.get('sha256')} != {i['sha256']})")
        return X

    # ---------------------------------------------------------------- predict
    def predict_proba(self, frame) -> tuple[np.ndarray, list[str], list[str]]:
        """(P [n, k] in `classes` order, modality per row, note per row)."""
        x = normalise_input(frame)
        selected, models = self.bundle.selected, self.bundle.models
        has_image = (x["image"] != "").to_numpy()
        uses_image = selected["mode"] != "text"
        images = self.load_images(x.loc[has_image, "image"]) if (uses_image and has_image.any()) else None
        T = self.text_features(x["name"], x["description"])
        P = models["text"].predict_proba(T)
        modality, note = ["text"] * len(x), [""] * len(x)
        for r in np.flatnonzero(~has_image):
            note[r] = "no image given: text head only"
        if images is not None:
            rows = np.flatnonzero(has_image)
            P[rows] = F.fusion_proba(models, selected, T[rows], self.image_features(images))
            for r in rows:
                modality[r] = "image" if selected["mode"] == "image" else "text+image"
        elif has_image.any():
            for r in np.flatnonzero(has_image):
                note[r] = "the selected model uses the text only; image not used"
        return P, modality, note

    def predict(self, frame, top_k: int = TOP_K) -> pd.DataFrame:
        P, modality, note = self.predict_proba(frame)
        classes = np.asarray(self.bundle.classes)
        k = min(top_k, len(classes))
        order = np.argsort(-P, axis=1, kind="stable")[:, :k]
        out = {}
        for j in range(k):
            out[f"category_{j + 1}"] = classes[order[:, j]].tolist()
            out[f"probability_{j + 1}"] = np.take_along_axis(P, order[:, j:j + 1], axis=1)[:, 0].astype(float)
        out["modality"], out["note"] = modality, note
        return pd.DataFrame(out)
