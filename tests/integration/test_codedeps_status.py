"""`dvc status` after an edit names exactly the stages that run the edited code (fkstudy.codedeps), on a copy of
the reproduced small pipeline: an image module re-runs image stages only, a text encoder module only the stages
that encode text, a shared module every stage that imports it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fkstudy import codedeps

from .conftest import run

pytestmark = pytest.mark.integration
TEXT_HALF = ("clean_text", "text_features", "text_classifier", "cluster@text_")


@pytest.fixture(scope="module")
def status_repo(reproduced, tmp_path_factory) -> Path:
    """A copy of the reproduced repo sharing its DVC cache; `dvc status` is clean there."""
    src, _ = reproduced
    dest = tmp_path_factory.mktemp("codedeps") / "repo"
    shutil.copytree(src, dest, symlinks=True,
                    ignore=lambda d, names: {"cache", "tmp"} & set(names) if Path(d).name == ".dvc" else set())
    run(["dvc", "cache", "dir", "--local", str(src / ".dvc" / "cache")], dest)
    assert changed(dest) == set(), "the reproduced repo is not up to date"
    return dest


def changed(repo: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], repo).stdout or "{}"))


def touched(repo: Path, module: str) -> set[str]:
    """The stages `dvc status` names after a comment is appended to `module` (restored after)."""
    path = repo / module
    before = path.read_bytes()
    try:
        path.write_bytes(before + b"\n# touched by test_codedeps_status\n")
        return changed(repo)
    finally:
        path.write_bytes(before)


@pytest.mark.parametrize("module", ["src/fkstudy/image/registry.py", "src/fkstudy/text/encoders.py",
                                    "src/fkstudy/runtime.py", "src/fkstudy/evaluate/cluster.py"])
def test_an_edit_reruns_exactly_the_stages_running_that_code(status_repo, module):
    expected = {s for s, files in codedeps.stage_closures(status_repo).items() if module in files}
    got = touched(status_repo, module)
    assert got == expected, f"{module}: dvc status names {sorted(got ^ expected)} unexpectedly / not"
    assert changed(status_repo) == set()
    groups = {s.split("@")[0] for s in got}
    if module.endswith("image/registry.py"):
        assert got and not [s for s in got if s.startswith(TEXT_HALF)], sorted(got)
    if module.endswith("text/encoders.py"):
        assert {s for s in got if s.startswith("text_features@")} == \
            {s for s in codedeps.stage_closures(status_repo) if s.startswith("text_features@")}
        # plus fine_tune_text: its baseline is the same encoder frozen, embedded through encoders.py
        assert groups <= {"text_features", "fine_tune_text", "pretrained", "register", "fusion", "report"}, \
            sorted(got)
    if module.endswith("runtime.py"):
        assert got == set(codedeps.stage_closures(status_repo)), "every stage starts through fkstudy.runtime"
    if module.endswith("evaluate/cluster.py"):
        # the cluster stages, plus the stages reusing its helpers (zero_shot's ARI, the report)
        assert "cluster" in groups and groups <= {"cluster", "zero_shot", "report"}, sorted(got)
