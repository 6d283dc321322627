"""Atomic outputs: a write or a stage that dies half-way leaves nothing a later stage would accept.

Every writer in fkstudy.files goes through `atomic_path` (write a hidden temporary file beside the
target, rename it onto the target only when complete). Here each writer is made to fail after
half of its work (an exception injected by monkeypatch, or the process killed with SIGKILL),
then the reader the next stage uses is pointed at the target: it finds the previous complete
file or none — never a partial one — and a rerun produces the file.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fkstudy import files
from fkstudy.data.catalog import CatalogError, load_catalog
from fkstudy.image.cache import load_image_cache, save_image_cache

ROOT = Path(__file__).resolve().parents[2]


class Killed(RuntimeError):
    """The injected failure."""


def _catalog(n: int = 30) -> pd.DataFrame:
    ids = [f"p{i:02d}" for i in range(n)]
    return pd.DataFrame({"id": ids, "name": ids, "description": "d", "category": ["A", "B", "C"] * (n // 3),
                         "image": [f"{i}.jpg" for i in ids], "image_status": "ok",
                         "split": (["train"] * 3 + ["val", "test"]) * (n // 5)})


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    return fig


def _figure_class():
    from matplotlib.figure import Figure

    return Figure


def _read_png(path):
    from PIL import Image

    with Image.open(path) as im:
        im.load()


def _fail_after_first_array(monkeypatch):
    """np.lib.format.write_array raises once the first array of an .npz has been written."""
    real, calls = np.lib.format.write_array, []

    def half(fh, arr, *a, **k):
        if calls:
            raise Killed("killed after half of the arrays")
        calls.append(1)
        return real(fh, arr, *a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", half)


def _fail_half_written(monkeypatch, owner, method: str, text: bool):
    """owner.method(target, ...) writes half of what it would have written, then raises."""
    real = getattr(owner, method)

    def half(self, target, *a, **k):
        real(self, target, *a, **k)
        data = Path(target).read_bytes()
        Path(target).write_bytes(data[: len(data) // 2])
        raise Killed(f"killed half-way through {method}")

    if text:  # Path.write_text(self, data): `self` is the path
        def half(self, data, *a, **k):  # noqa: F811
            with open(self, "w", encoding="utf-8") as fh:
                fh.write(data[: len(data) // 2])
            raise Killed("killed half-way through write_text")
    monkeypatch.setattr(owner, method, half)


X = np.arange(40, dtype=np.float32).reshape(10, 4)
IDS = [f"p{i}" for i in range(10)]
IMAGES = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)

# name: (file, write(path, version), read(path) -> comparable, inject(monkeypatch))
WRITERS = {
    "save_features": ("f.npz", lambda p, v: files.save_features(p, X + v, IDS, {"v": v}),
                      lambda p: files.load_features(p)[2]["v"], _fail_after_first_array),
    "save_image_cache": ("images.npz", lambda p, v: save_image_cache(p, IMAGES, ["a", "b", "c", "d"], {"v": v}),
                         lambda p: load_image_cache(p)[2]["v"], _fail_after_first_array),
    "save_npz": ("arrays.npz", lambda p, v: files.save_npz(p, a=np.full(5, v), b=np.arange(3), meta=np.asarray("{}")),
                 lambda p: int(files.load_npz(p, ("a", "b", "meta"), "array file", "x")[0][0]), _fail_after_first_array),
    "write_json": ("m.json", lambda p, v: files.write_json(p, {"v": v, "pad": list(range(50))}),
                   lambda p: json.loads(Path(p).read_text())["v"],
                   lambda mp: _fail_half_written(mp, Path, "write_text", text=True)),
    "write_csv": ("t.csv", lambda p, v: files.write_csv(p, pd.DataFrame({"v": [v] * 50, "x": range(50)})),
                  lambda p: int(pd.read_csv(p)["v"].iloc[-1]) if len(pd.read_csv(p)) == 50 else "partial",
                  lambda mp: _fail_half_written(mp, pd.DataFrame, "to_csv", text=False)),
    "write_parquet": ("catalog.parquet", lambda p, v: files.write_parquet(p, _catalog().assign(name=f"v{v}")),
                      lambda p: load_catalog(p)["name"].iloc[0],
                      lambda mp: _fail_half_written(mp, pd.DataFrame, "to_parquet", text=False)),
    "save_figure": ("fig.png", lambda p, v: files.save_figure(_figure(), p),
                    lambda p: _read_png(p) or "png", lambda mp: _fail_half_written(mp, _figure_class(), "savefig",
                                                                               text=False)),
}
NOT_FOUND = (files.FeatureFileError, CatalogError, FileNotFoundError)


@pytest.mark.parametrize("name", list(WRITERS))
def test_writer_killed_half_way_leaves_no_file_and_rerun_recovers(tmp_path, monkeypatch, name):
    fname, write, read, inject = WRITERS[name]
    path = tmp_path / "out" / fname
    with monkeypatch.context() as mp:
        inject(mp)
        with pytest.raises(Killed):
            write(path, 1)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []  # the temporary file was removed too
    with pytest.raises(NOT_FOUND):
        read(path)
    write(path, 1)  # rerun
    first = read(path)
    assert first is not None


@pytest.mark.parametrize("name", list(WRITERS))
def test_writer_killed_half_way_keeps_the_previous_complete_file(tmp_path, monkeypatch, name):
    fname, write, read, inject = WRITERS[name]
    path = tmp_path / fname
    write(path, 1)
    before, old_bytes = read(path), path.read_bytes()
    with monkeypatch.context() as mp:
        inject(mp)
        with pytest.raises(Killed):
            write(path, 2)
    assert path.read_bytes() == old_bytes and read(path) == before
    assert [p.name for p in tmp_path.iterdir()] == [fname]


# ------------------------------------------------------------------------------ a stage-like function
def _stage(out: Path, fail_at: str | None = None) -> None:
    """What an extractor stage does: compute rows in two halves, write features, then metrics."""
    halves = []
    for h in range(2):
        halves.append(X[h * 5:(h + 1) * 5] * 2)
        if fail_at == "compute" and h == 0:
            raise Killed("killed after half of the rows")
    feats = np.concatenate(halves)
    files.save_features(out / "data/features/x.npz", feats, IDS, {"extractor": "x"})
    if fail_at == "between":
        raise Killed("killed between the two outputs")
    files.write_json(out / "metrics/x.json", {"dim": int(feats.shape[1]), "n": len(IDS)})


def _outputs(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fail_at", ["compute", "save", "between"])
def test_stage_killed_midway_then_rerun_gives_the_uninterrupted_outputs(tmp_path, monkeypatch, fail_at):
    clean = tmp_path / "clean"
    _stage(clean)
    reference = _outputs(clean)
    out = tmp_path / "run"
    with monkeypatch.context() as mp:
        if fail_at == "save":
            _fail_after_first_array(mp)
        with pytest.raises(Killed):
            _stage(out, None if fail_at == "save" else fail_at)
    left = _outputs(out) if out.exists() else {}
    if fail_at == "between":
        # the features are complete (this run's, byte-identical to the clean run's); the stage did not
        # finish, so DVC records nothing in dvc.lock and `dvc repro` runs it again
        assert left == {"data/features/x.npz": reference["data/features/x.npz"]}
    else:
        assert left == {}
    _stage(out)  # rerun
    assert _outputs(out) == reference


# ------------------------------------------------------------------------------ a real SIGKILL
CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {src!r})
    import numpy as np
    from fkstudy import files
    real = np.lib.format.write_array
    def slow(fh, arr, *a, **k):
        real(fh, arr, *a, **k)
        fh.flush()
        print("half", flush=True)
        time.sleep(120)
    np.lib.format.write_array = slow
    if {kind!r} == "npz":
        files.save_features({path!r}, np.ones((1000, 64), np.float32), [str(i) for i in range(1000)], {{}})
    else:
        from pathlib import Path
        def slow_text(self, data, *a, **k):
            with open(self, "w") as fh:
                fh.write(data[: len(data) // 2]); fh.flush()
                print("half", flush=True)
                time.sleep(120)
        Path.write_text = slow_text
        files.write_json({path!r}, {{"ari": 0.5, "pad": list(range(100))}})
""")


@pytest.mark.parametrize("kind, fname", [("npz", "text_tfidf.npz"), ("json", "text_tfidf.json")])
def test_sigkill_mid_write_leaves_nothing_a_reader_or_glob_accepts(tmp_path, kind, fname):
    path = tmp_path / fname
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(src=str(ROOT / "src"), kind=kind, path=str(path))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "half"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not path.exists()
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and left[0].name.startswith(f".{fname}.") and left[0].name.endswith(".tmp")
    # the report stage globs metrics/**/*.json; extractors' files are read by exact name
    assert list(tmp_path.rglob(f"*{path.suffix}")) == []
    if kind == "npz":
        with pytest.raises(files.FeatureFileError, match="not found"):
            files.load_features(path)
        files.save_features(path, np.ones((3, 2), np.float32), ["a", "b", "c"], {})
        assert files.load_features(path)[0].shape == (3, 2)
    else:
        files.write_json(path, {"ari": 0.5})
        assert json.loads(path.read_text()) == {"ari": 0.5}
