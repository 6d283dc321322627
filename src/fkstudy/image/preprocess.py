"""Decode product photos robustly, resize them to one square size, measure their quality.

One image goes through `process_image`:
  decode_rgb   header read first -> w*h checked against `max_pixels` BEFORE any pixel is
               decoded (decompression-bomb guard); full decode (truncated files raise);
               EXIF orientation applied; any mode (CMYK, L, I;16, P, RGBA, LA, ...) -> RGB,
               transparency composited on white.
  resize_square  to `size` x `size`: "pad" (letterbox on white), "crop" (centre crop) or
               "stretch" (aspect ratio not kept).
  image_quality  blur (variance of the Laplacian), contrast (grey std), brightness (grey mean),
               measured on the photo scaled so its longer side is `size` (before padding or
               cropping), so values compare across photos of any resolution and any `aspect`.

`build_image_cache` runs that over every catalog row whose ingest `image_status` is "ok",
in parallel, and returns rows in sorted-id order (never in completion order).
"""
from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field
from tqdm import tqdm

from ..errors import StudyError
from ..schema import Section

ASPECTS = ("pad", "crop", "stretch")
FAIL_REASONS = ("missing", "unreadable", "truncated", "too_large", "error")
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


class PrepImagesParams(Section):
    size: int = Field(ge=32, le=1024)                 # square side of the cached images
    aspect: Literal[ASPECTS]
    blank_threshold: float = Field(ge=0.0, le=255.0)  # grey-level std below which a photo is near-blank
    jpeg_draft: bool                                  # libjpeg reduced-size decoding (fast, anti-aliased)
    samples_per_category: int = Field(ge=1, le=20)


class NoImagesError(StudyError, RuntimeError):
    """Not one photo of the catalog could be decoded: the image folder is wrong or empty."""


class ImageDecodeError(StudyError, ValueError):
    """One image could not be used; `reason` is one of FAIL_REASONS, the message names the file."""

    def __init__(self, reason: str, path: Path | str, detail: str):
        self.reason = reason
        self.path = Path(path)
        self.detail = detail
        super().__init__(f"{self.path}: {reason}: {detail}")


@dataclass(frozen=True)
class SourceInfo:
    """What the file was before conversion (width/height as displayed, i.e. after EXIF rotation)."""

    width: int
    height: int
    mode: str
    format: str
    exif_orientation: int


# --------------------------------------------------------------------------- decoding
def decode_rgb(path: str | Path, max_pixels: int, draft_side: int | None = None) -> tuple[np.ndarray, SourceInfo]:
    """Decode `path` to an RGB uint8 array [h, w, 3].

    The size is read from the header and refused when w*h > max_pixels, before decoding.
    `draft_side`: for JPEGs, let libjpeg decode directly at 1/2, 1/4 or 1/8 scale as long as
    both sides stay >= draft_side (much faster, and an anti-aliased reduction); None = full size.
    Raises ImageDecodeError (reason missing/unreadable/truncated/too_large) naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError("missing", path, "file not found")
    try:
        im = Image.open(path)  # reads the header only
    except Image.DecompressionBombError as exc:  # Pillow's own hard limit (> 2 x MAX_IMAGE_PIXELS)
        raise ImageDecodeError("too_large", path, str(exc)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("unreadable", path, "not a recognised image format") from None
    except OSError as exc:
        raise ImageDecodeError("unreadable", path, str(exc)) from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise ImageDecodeError("too_large", path, f"{w}x{h} = {w * h} px > max_pixels {max_pixels} "
                                   "(decompression-bomb guard, refused before decoding)")
        mode, fmt = im.mode, im.format or ""
        orientation = _exif_orientation(im)
        if draft_side and fmt == "JPEG":
            im.draft(None, (draft_side, draft_side))
        try:
            im.load()
        except (OSError, SyntaxError, EOFError, ValueError) as exc:
            msg = str(exc) or type(exc).__name__
            low = msg.lower()
            reason = "truncated" if ("truncat" in low or "broken data" in low or isinstance(exc, EOFError)) \
                else "unreadable"
            raise ImageDecodeError(reason, path, msg) from None
        im = ImageOps.exif_transpose(im) if orientation != 1 else im
        rgb = to_rgb(im)
    if orientation in _SWAPS_AXES:
        w, h = h, w
    return np.array(rgb, dtype=np.uint8), SourceInfo(w, h, mode, fmt, orientation)


def _exif_orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # malformed EXIF must not lose the photo
        return 1
    return value if 1 <= value <= 8 else 1


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Transparency (alpha channel, tRNS, palette) is composited on white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and arr.max() > 255:  # 16-bit data: scale to 8 bits
            arr = arr / 257.0
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


# --------------------------------------------------------------------------- resizing
def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    shrinking = width * height < w * h
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def fit_longer_side(rgb: np.ndarray, size: int) -> np.ndarray:
    """Scale so that the longer side is `size` (aspect ratio kept)."""
    h, w = rgb.shape[:2]
    s = size / max(w, h)
    return _resize(rgb, max(1, round(w * s)), max(1, round(h * s)))


def resize_square(rgb: np.ndarray, size: int, aspect: str = "pad") -> np.ndarray:
    """RGB uint8 [h, w, 3] -> [size, size, 3].

    pad: whole photo kept, letterboxed on white (product shots are on white backgrounds);
    crop: shorter side scaled to `size`, centre cropped; stretch: scaled to size x size.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    h, w = rgb.shape[:2]
    if aspect == "stretch":
        return _resize(rgb, size, size)
    if aspect == "pad":
        content = fit_longer_side(rgb, size)
        ch, cw = content.shape[:2]
        out = np.full((size, size, 3), 255, dtype=np.uint8)
        top, left = (size - ch) // 2, (size - cw) // 2
        out[top:top + ch, left:left + cw] = content
        return out
    s = size / min(w, h)
    nw, nh = max(size, math.ceil(w * s - 1e-9)), max(size, math.ceil(h * s - 1e-9))
    scaled = _resize(rgb, nw, nh)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(scaled[top:top + size, left:left + size])


# --------------------------------------------------------------------------- quality
def image_quality(rgb: np.ndarray, blank_threshold: float) -> dict:
    """Blur, contrast, brightness of an RGB uint8 image (grey levels 0-255).

    blur: variance of the Laplacian (low = blurry or featureless); contrast: grey std;
    brightness: grey mean; near_blank: contrast < blank_threshold.
    """
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    contrast = float(grey.std())
    return {
        "blur": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        "contrast": contrast,
        "brightness": float(grey.mean()),
        "near_blank": bool(contrast < blank_threshold),
    }


@dataclass(frozen=True)
class PrepConfig:
    size: int = 224
    aspect: str = "pad"
    max_pixels: int = 40_000_000
    blank_threshold: float = 8.0
    jpeg_draft: bool = True

    def __post_init__(self):
        if self.aspect not in ASPECTS:
            raise ValueError(f"aspect must be one of {ASPECTS}, got {self.aspect!r}")
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")


def process_image(path: str | Path, cfg: PrepConfig) -> tuple[np.ndarray, dict]:
    """Decode + resize one photo; return ([size, size, 3] uint8, quality record)."""
    rgb, src = decode_rgb(path, cfg.max_pixels, draft_side=cfg.size if cfg.jpeg_draft else None)
    quality = image_quality(fit_longer_side(rgb, cfg.size), cfg.blank_threshold)
    record = {"orig_width": src.width, "orig_height": src.height,
              "aspect_ratio": src.width / src.height, "mode": src.mode, "format": src.format,
              "exif_orientation": src.exif_orientation, **quality}
    return resize_square(rgb, cfg.size, cfg.aspect), record


# --------------------------------------------------------------------------- whole catalog
QUALITY_COLUMNS = ["id", "orig_width", "orig_height", "aspect_ratio", "mode", "format", "exif_orientation",
                   "blur", "contrast", "brightness", "near_blank"]
FAILURE_COLUMNS = ["id", "image", "reason", "detail"]


def build_image_cache(catalog_df: pd.DataFrame, image_dir: str | Path, size: int, aspect: str,
                      max_pixels: int, blank_threshold: float, n_jobs: int = 1, jpeg_draft: bool = True,
                      progress: bool = True) -> tuple[np.ndarray, list[str], pd.DataFrame, pd.DataFrame]:
    """Process every catalog row with image_status == "ok".

    Returns (images uint8 [n, size, size, 3], ids [n], quality DataFrame (one row per id in
    `ids`), failures DataFrame [id, image, reason, detail]); rows are in sorted-id order.
    Work is spread over `n_jobs` threads: Pillow's decoder and OpenCV release the GIL, so
    threads use every core without copying pixels between processes.
    """
    cfg = PrepConfig(size=size, aspect=aspect, max_pixels=max_pixels, blank_threshold=blank_threshold,
                     jpeg_draft=jpeg_draft)
    missing_cols = {"id", "image", "image_status"} - set(catalog_df.columns)
    if missing_cols:
        raise KeyError(f"catalog lacks columns {sorted(missing_cols)}")
    rows = catalog_df.loc[catalog_df["image_status"] == "ok", ["id", "image"]]
    rows = rows.sort_values("id", kind="stable")
    if rows["id"].duplicated().any():
        raise ValueError(f"catalog has duplicate ids, e.g. {rows.loc[rows['id'].duplicated(), 'id'].iloc[0]!r}")
    image_dir = Path(image_dir)
    ids_all, names = rows["id"].astype(str).tolist(), rows["image"].astype(str).tolist()
    images = np.empty((len(ids_all), size, size, 3), dtype=np.uint8)

    def work(i: int):
        try:
            images[i], record = process_image(image_dir / names[i], cfg)  # each thread owns slot i
            return record
        except ImageDecodeError as exc:
            return exc
        except Exception as exc:  # a bug or an exotic file: report it, keep the others
            return ImageDecodeError("error", image_dir / names[i], f"{type(exc).__name__}: {exc}")

    bar = tqdm(total=len(ids_all), desc="prep_images", unit="img", file=sys.stderr, disable=not progress,
               mininterval=1.0)
    results = []
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        for res in pool.map(work, range(len(ids_all))):  # map keeps submission (= sorted id) order
            results.append(res)
            bar.update(1)
    bar.close()

    ok = np.array([not isinstance(r, ImageDecodeError) for r in results], dtype=bool)
    quality = pd.DataFrame([{"id": i, **r} for i, r in zip(ids_all, results) if isinstance(r, dict)],
                           columns=QUALITY_COLUMNS)
    failures = pd.DataFrame([{"id": i, "image": n, "reason": r.reason, "detail": r.detail}
                             for i, n, r in zip(ids_all, names, results) if isinstance(r, ImageDecodeError)],
                            columns=FAILURE_COLUMNS)
    if not ok.all():
        images = images[ok]
    ids = [i for i, good in zip(ids_all, ok) if good]
    return images, ids, quality, failures


def require_images(ids: list[str], failures: pd.DataFrame) -> None:
    """Stop when no photo at all could be used (the failure report is written before this)."""
    if not ids:
        reasons = failures["reason"].value_counts().to_dict() if len(failures) else {}
        raise NoImagesError(f"prep_images: no image could be decoded (failures by reason: {reasons}); "
                           "check data.raw_dir / data.image_dir and reports/prep_images_failures.csv")


def prep_metrics(catalog: pd.DataFrame, quality: pd.DataFrame, failures: pd.DataFrame, cache_bytes: int) -> dict:
    """Flat, human-named metrics of one prep_images run (no timings: those vary between identical runs)."""
    processed = len(quality)
    return {
        "processed": processed,
        "failed": int(len(failures)),
        "failed_by_reason": {k: int(v) for k, v in failures["reason"].value_counts().sort_index().items()},
        "skipped_at_ingest": int((catalog["image_status"] != "ok").sum()),
        "near_blank": int(quality["near_blank"].sum()),
        "blur_median": round(float(quality["blur"].median()), 2) if processed else 0.0,
        "contrast_median": round(float(quality["contrast"].median()), 2) if processed else 0.0,
        "brightness_median": round(float(quality["brightness"].median()), 2) if processed else 0.0,
        "exif_rotated": int((quality["exif_orientation"] != 1).sum()),
        "converted_to_rgb": int((quality["mode"] != "RGB").sum()),
        "cache_mb": round(cache_bytes / 2 ** 20, 1),
    }
