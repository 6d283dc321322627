"""Image decoding, resizing, quality, the cache builder and the cache file, on tiny generated images."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from fkstudy.image.cache import load_image_cache, save_image_cache
from fkstudy.image.preprocess import (ImageDecodeError, build_image_cache, decode_rgb, image_quality,
                                      resize_square)
from fkstudy.errors import StudyError
from fkstudy.files import FeatureFileError

BIG = 10_000_000


def _two_halves(w: int, h: int, left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = left
    arr[:, w // 2:] = right
    return Image.fromarray(arr)


def _noise_jpeg(path: Path, side: int = 128) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def _forge_png_size(path: Path, width: int, height: int) -> None:
    """Rewrite the IHDR of a small PNG so its header claims width x height (valid CRC)."""
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- decoding
def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, quality=95)  # no cyan/black: red
    rgb, info = decode_rgb(path, BIG)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert info.mode == "CMYK"
    r, g, b = rgb.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def test_grayscale_and_16bit_grayscale(tmp_path):
    Image.new("L", (20, 10), 100).save(tmp_path / "g.png")
    rgb, info = decode_rgb(tmp_path / "g.png", BIG)
    assert rgb.shape == (10, 20, 3) and info.mode == "L"
    assert (rgb == 100).all()
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "g16.png")
    rgb16, info16 = decode_rgb(tmp_path / "g16.png", BIG)
    assert info16.mode.startswith("I")
    assert rgb16.shape == (8, 8, 3) and abs(int(rgb16[0, 0, 0]) - round(40000 / 257)) <= 1


def test_alpha_is_composited_on_white(tmp_path):
    arr = np.zeros((10, 20, 4), np.uint8)
    arr[..., 0] = 255  # red ...
    arr[:, :10, 3] = 255  # ... opaque on the left, fully transparent on the right
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    rgb, _ = decode_rgb(tmp_path / "a.png", BIG)
    assert (rgb[:, :10] == (255, 0, 0)).all()
    assert (rgb[:, 10:] == 255).all()


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (16, 16), 0)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (0, 0, 8, 16))  # left half index 1 = blue, right half index 0 = transparent
    im.save(tmp_path / "p.png", transparency=0)
    rgb, info = decode_rgb(tmp_path / "p.png", BIG)
    assert info.mode == "P"
    assert (rgb[:, :8] == (0, 0, 255)).all()
    assert (rgb[:, 8:] == 255).all()
    Image.new("P", (4, 4), 0).save(tmp_path / "p2.png")  # palette, no transparency
    assert decode_rgb(tmp_path / "p2.png", BIG)[0].shape == (4, 4, 3)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    _two_halves(60, 40).save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    rgb, info = decode_rgb(tmp_path / "rot.jpg", BIG)
    assert rgb.shape == (60, 40, 3)  # portrait once rotated
    assert (info.width, info.height, info.exif_orientation) == (40, 60, 6)
    top, bottom = rgb[:20].reshape(-1, 3).mean(0), rgb[40:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_truncated_jpeg_raises_naming_the_file(tmp_path):
    full = _noise_jpeg(tmp_path / "full.jpg")
    cut = tmp_path / "half_written.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageDecodeError) as err:
        decode_rgb(cut, BIG)
    assert err.value.reason == "truncated"
    assert "half_written.jpg" in str(err.value)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # we never switch Pillow's global lenience on


def test_too_large_header_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (4, 4)).save(path)
    _forge_png_size(path, 5000, 5000)  # 25 Mpx claimed, below Pillow's own limit

    def no_decode(self, *a, **k):
        raise AssertionError("pixels decoded although the header was too large")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageDecodeError) as err:
        decode_rgb(path, max_pixels=1_000_000)
    assert err.value.reason == "too_large" and "bomb.png" in str(err.value)


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(ImageDecodeError) as err:
        decode_rgb(tmp_path / "nope.jpg", BIG)
    assert err.value.reason == "missing"
    assert isinstance(err.value, StudyError) and isinstance(err.value, ValueError)  # a stage prints one line
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageDecodeError) as err:
        decode_rgb(tmp_path / "text.jpg", BIG)
    assert err.value.reason == "unreadable"


def test_jpeg_draft_keeps_both_sides_at_least_requested(tmp_path):
    _noise_jpeg(tmp_path / "n.jpg", side=400)
    rgb, info = decode_rgb(tmp_path / "n.jpg", BIG, draft_side=96)
    assert (info.width, info.height) == (400, 400)  # original size reported
    assert min(rgb.shape[:2]) >= 96 and rgb.shape[0] < 400  # decoded at reduced scale


# --------------------------------------------------------------------------- resizing, quality
@pytest.mark.parametrize("aspect", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("shape", [(30, 60), (60, 30), (10, 10), (200, 150)])
def test_resize_square_shapes(aspect, shape):
    out = resize_square(np.zeros((*shape, 3), np.uint8), 32, aspect)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_pad_letterboxes_on_white_and_crop_keeps_centre():
    wide = np.zeros((30, 60, 3), np.uint8)  # black, twice as wide as high
    padded = resize_square(wide, 32, "pad")
    assert (padded[:7] == 255).all() and (padded[-7:] == 255).all()  # white bands above/below
    assert (padded[9:23] == 0).all()
    img = _two_halves(60, 30, left=(255, 0, 0), right=(0, 0, 255))
    img = np.array(img)
    img[:, 25:35] = (0, 255, 0)  # green centre stripe
    cropped = resize_square(img, 30, "crop")
    assert cropped.shape == (30, 30, 3)
    assert (cropped[:, 12:18, 1] > 200).all()  # the centre survives the crop
    assert cropped[:, 0, 0].mean() > 200 and cropped[:, -1, 2].mean() > 200
    with pytest.raises(ValueError):
        resize_square(img, 30, "zoom")


def test_image_quality_measures():
    flat = np.full((32, 32, 3), 200, np.uint8)
    q = image_quality(flat, blank_threshold=8.0)
    assert q["near_blank"] and q["contrast"] == 0 and q["blur"] == 0 and q["brightness"] == pytest.approx(200)
    checker = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    q2 = image_quality(np.repeat(checker[..., None], 3, axis=2), blank_threshold=8.0)
    assert not q2["near_blank"] and q2["contrast"] > 100 and q2["blur"] > 1000


# --------------------------------------------------------------------------- whole catalog
def test_build_image_cache_orders_by_id_and_reports_failures(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for pid in ["d", "a", "c", "f", "b"]:  # deliberately unsorted
        Image.fromarray(rng.integers(0, 256, (20 + 5 * len(rows), 30, 3), dtype=np.uint8)).save(tmp_path / f"{pid}.png")
        rows.append({"id": pid, "image": f"{pid}.png", "image_status": "ok"})
    full = _noise_jpeg(tmp_path / "e_full.jpg")
    (tmp_path / "e.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    rows += [{"id": "e", "image": "e.jpg", "image_status": "ok"},  # truncated
             {"id": "g", "image": "gone.jpg", "image_status": "ok"},  # vanished since ingest
             {"id": "h", "image": "", "image_status": "missing"}]  # excluded at ingest: not processed
    catalog = pd.DataFrame(rows)
    images, ids, quality, failures = build_image_cache(catalog, tmp_path, size=24, aspect="pad",
                                                       max_pixels=BIG, blank_threshold=8.0, n_jobs=2,
                                                       progress=False)
    assert ids == ["a", "b", "c", "d", "f"]
    assert images.shape == (5, 24, 24, 3) and images.dtype == np.uint8
    assert quality["id"].tolist() == ids
    assert sorted(zip(failures["id"], failures["reason"])) == [("e", "truncated"), ("g", "missing")]
    # each cached row is the image of its own id, whatever the completion order
    for k, pid in enumerate(ids):
        src = np.array(Image.open(tmp_path / f"{pid}.png"))
        assert np.array_equal(images[k], resize_square(src, 24, "pad"))
    assert quality.set_index("id").loc["a", "orig_height"] == 25  # "a" was the 2nd image written


# --------------------------------------------------------------------------- cache file
def test_cache_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    save_image_cache(tmp_path / "c.npz", images, ["x", "y", "z"], {"size": 8})
    got, ids, meta = load_image_cache(tmp_path / "c.npz")
    assert np.array_equal(got, images) and ids.tolist() == ["x", "y", "z"] and meta == {"size": 8}
    assert ids.dtype.kind == "U"


def test_cache_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad_cache.npz"
    with pytest.raises(FeatureFileError, match="bad_cache.npz.*not found"):
        load_image_cache(bad)
    np.savez(bad, images=np.zeros((2, 4, 4, 3), np.float32), ids=np.array(["a", "b"]), meta=np.asarray("{}"))
    with pytest.raises(FeatureFileError, match="bad_cache.npz.*uint8"):
        load_image_cache(bad)
    np.savez(bad, images=np.zeros((2, 4, 4), np.uint8), ids=np.array(["a", "b"]), meta=np.asarray("{}"))
    with pytest.raises(FeatureFileError, match=r"\[n, H, W, 3\]"):
        load_image_cache(bad)
    np.savez(bad, images=np.zeros((2, 4, 4, 3), np.uint8), meta=np.asarray("{}"))
    with pytest.raises(FeatureFileError, match="missing arrays.*ids"):
        load_image_cache(bad)
    np.savez(bad, images=np.zeros((2, 4, 4, 3), np.uint8), ids=np.array(["a", None], dtype=object),
             meta=np.asarray("{}"))
    with pytest.raises(FeatureFileError, match="bad_cache.npz"):  # object arrays need pickle: refused
        load_image_cache(bad)
    with pytest.raises(FeatureFileError, match="3 ids for 2 images"):
        save_image_cache(bad, np.zeros((2, 4, 4, 3), np.uint8), ["a", "b", "c"], {})
