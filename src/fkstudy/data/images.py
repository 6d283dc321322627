"""Image checks shared by ingest (validation) and the image stages (decoding).

`inspect_image` never decodes more than `max_pixels`: the size is read from the
header first, so a decompression bomb is refused before any memory is spent on it.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

OK = "ok"


@dataclass(frozen=True)
class ImageCheck:
    status: str  # ok | missing | unreadable | truncated | too_large | too_small
    detail: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    file_bytes: int = 0


def inspect_image(path: Path, max_pixels: int, min_side: int) -> ImageCheck:
    if not path.exists():
        return ImageCheck("missing", f"{path.name}: file not found")
    size = path.stat().st_size
    if size == 0:
        return ImageCheck("unreadable", f"{path.name}: empty file", file_bytes=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                fmt, mode = im.format or "", im.mode
                if w * h > max_pixels:
                    return ImageCheck("too_large", f"{path.name}: {w}x{h} = {w * h} px > data.max_image_pixels "
                                      f"{max_pixels} (decompression-bomb guard)", w, h, mode, fmt, size)
                im.load()  # full decode: catches truncated files
    except Image.DecompressionBombError as exc:
        return ImageCheck("too_large", f"{path.name}: {exc}", file_bytes=size)
    except Image.DecompressionBombWarning as exc:
        return ImageCheck("too_large", f"{path.name}: {exc}", file_bytes=size)
    except UnidentifiedImageError:
        return ImageCheck("unreadable", f"{path.name}: not a recognised image format", file_bytes=size)
    except OSError as exc:
        kind = "truncated" if "truncated" in str(exc).lower() or "broken data" in str(exc).lower() else "unreadable"
        return ImageCheck(kind, f"{path.name}: {exc}", file_bytes=size)
    if min(w, h) < min_side:
        return ImageCheck("too_small", f"{path.name}: {w}x{h} smaller than data.min_image_side {min_side}",
                          w, h, mode, fmt, size)
    return ImageCheck(OK, "", w, h, mode, fmt, size)


def inspect_images(paths: list[Path], max_pixels: int, min_side: int, n_jobs: int = 1) -> list[ImageCheck]:
    """Inspect many images; Pillow releases the GIL while decoding, so threads use every core."""
    if n_jobs <= 1:
        return [inspect_image(p, max_pixels, min_side) for p in paths]
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(lambda p: inspect_image(p, max_pixels, min_side), paths))


def mode_note(mode: str) -> str | None:
    """Image modes that decode fine but need converting to RGB before any model sees them."""
    return {"CMYK": "cmyk", "L": "grayscale", "LA": "grayscale_alpha", "RGBA": "alpha", "P": "palette",
            "I": "grayscale_16bit", "I;16": "grayscale_16bit", "1": "bilevel"}.get(mode)
