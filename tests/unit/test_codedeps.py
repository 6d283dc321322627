"""dvc.yaml's code deps are exactly the imports (fkstudy.codedeps), and each stage's code stays its own."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fkstudy import codedeps

ROOT = Path(__file__).resolve().parents[2]


def copy_tree(dest: Path) -> Path:
    for rel in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / rel, dest / rel)
    for rel in ("src", "stages"):
        shutil.copytree(ROOT / rel, dest / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def test_dvc_yaml_code_deps_are_the_imports():
    diff = codedeps.differences(ROOT)
    assert not diff, "dvc.yaml code deps differ from the imports (run `python -m fkstudy.codedeps --write`):\n" + \
        "\n".join(diff)


def test_a_removed_or_added_dep_is_named(tmp_path):
    repo = copy_tree(tmp_path)
    text = (repo / "dvc.yaml").read_text()
    cluster = text.index("\n  cluster:\n")
    removed = text[:cluster] + text[cluster:].replace("        - src/fkstudy/files.py\n", "", 1)
    ingest = removed.index("\n  ingest:\n")
    added = removed[:ingest] + removed[ingest:].replace(
        "      - src/fkstudy/errors.py\n", "      - src/fkstudy/errors.py\n      - src/fkstudy/report/study.py\n", 1)
    (repo / "dvc.yaml").write_text(added)
    diff = codedeps.differences(repo)
    assert diff == ["stage cluster: missing code dep src/fkstudy/files.py (imported, not in dvc.yaml)",
                    "stage ingest: superfluous code dep src/fkstudy/report/study.py (in dvc.yaml, not imported)"]
    # --write puts it right, and leaves every data / params dep where it was
    assert codedeps.main(["--root", str(repo), "--write"]) == 0
    assert codedeps.differences(repo) == []
    assert (repo / "dvc.yaml").read_text() == text


def test_closure_follows_every_kind_of_import(tmp_path):
    (tmp_path / "src/fkstudy/sub/templates").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    files = {
        "src/fkstudy/__init__.py": "",
        "src/fkstudy/sub/__init__.py": "",
        "src/fkstudy/sub/templates/page.j2": "x",
        "src/fkstudy/a.py": "import numpy\n\ndef f():\n    from .sub import b  # lazy\n    return b\n",
        "src/fkstudy/sub/b.py": "from ..c import g\nREG = {'x': 'fkstudy.sub.d:fn'}\n",
        "src/fkstudy/c.py": "def g(): pass\n",
        "src/fkstudy/sub/d.py": "PACKAGE_DATA = ('templates',)\n",
        "src/fkstudy/unused.py": "",
        "stages/_bootstrap.py": "",
        "stages/other.py": "import _bootstrap\n",
        "stages/s.py": "import _bootstrap\nimport other\nfrom fkstudy import a\n",
    }
    for rel, body in files.items():
        (tmp_path / rel).write_text(body)
    got = codedeps.closure(codedeps.Tree(tmp_path), ["stages/s.py"])
    assert got == {"stages/s.py", "stages/_bootstrap.py", "stages/other.py", "src/fkstudy/__init__.py",
                   "src/fkstudy/a.py", "src/fkstudy/sub/__init__.py", "src/fkstudy/sub/b.py", "src/fkstudy/c.py",
                   "src/fkstudy/sub/d.py", "src/fkstudy/sub/templates"}


def test_every_package_data_file_is_declared():
    """A non-Python file under src/ is read by some module: it must be in a PACKAGE_DATA declaration (else no
    stage would re-run when it changes)."""
    closures = codedeps.stage_closures(ROOT, placeholders=True)
    declared = {f for c in closures.values() for f in c if not f.endswith(".py")}
    for path in (ROOT / "src").rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
            rel = path.relative_to(ROOT).as_posix()
            assert any(rel == d or rel.startswith(d + "/") for d in declared), f"{rel}: in no PACKAGE_DATA"


@pytest.fixture(scope="module")
def closures() -> dict[str, set[str]]:
    return codedeps.stage_closures(ROOT, placeholders=True)


def _half(stage: str) -> str | None:
    group, _, item = stage.partition("@")
    if group in ("clean_text", "text_features", "text_classifier") or item.startswith("text_"):
        return "text"
    if group in ("prep_images", "image_features", "deep_features", "augment", "train", "fine_tune", "gradcam",
                 "zero_shot", "multiseed") or item.startswith("image_"):
        return "image"
    return None


def test_a_stage_of_one_half_runs_no_code_of_the_other(closures):
    for stage, files in closures.items():
        half = _half(stage)
        if half is None:
            continue
        other = "image" if half == "text" else "text"
        foreign = sorted(f for f in files if f.startswith(f"src/fkstudy/{other}/"))
        assert not foreign, f"{stage} ({half} half) imports {foreign}"


def test_a_stage_loads_only_the_params_sections_it_declares(closures):
    assert "src/fkstudy/train/params.py" in closures["text_classifier@bow"]
    assert "src/fkstudy/evaluate/params.py" not in closures["text_classifier@bow"]
    assert "src/fkstudy/pipeline_params.py" not in set().union(*closures.values())
