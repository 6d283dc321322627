"""fkstudy.team: which outputs of a revision's dvc.lock the local DVC cache lacks (a real `dvc repro` in a tiny
generated repository), and the one-line message that names them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fkstudy import team
from fkstudy.review import revs

DVC_YAML = """stages:
  make:
    cmd: python make.py
    deps: [make.py]
    outs:
      - out.txt
      - folder
    metrics:
      - metrics.json:
          cache: false
"""
MAKE = """import json, os
os.makedirs("folder", exist_ok=True)
for i in range(3):
    open(f"folder/f{i}.txt", "w").write(f"file {i}")
open("out.txt", "w").write("out")
json.dump({"n": 3}, open("metrics.json", "w"))
"""


def sh(repo: Path, *cmd: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(list(cmd), cwd=repo, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("team") / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "make.py").write_text(MAKE)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, sys.executable, "-m", "dvc", "init", "-q")
    sh(repo, sys.executable, "-m", "dvc", "repro", "-q")
    sh(repo, *git, "add", "-A")
    sh(repo, *git, "commit", "-qm", "made")
    return repo


def obj(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def test_nothing_missing_after_repro(repo):
    assert team.missing_outputs(repo, revs.resolve(repo, "HEAD"), repo / ".dvc" / "cache") == []


def test_a_missing_file_or_a_file_of_a_folder_names_its_output(repo, tmp_path):
    lock = revs.read_lock(repo, revs.resolve(repo, "HEAD"))
    outs = {o["path"]: o["md5"] for o in lock["stages"]["make"]["outs"]}
    assert set(outs) == {"out.txt", "folder", "metrics.json"}
    cache = tmp_path / "cache"   # a copy of the cache, thinned
    shutil.copytree(repo / ".dvc" / "cache", cache)
    obj(cache, outs["out.txt"]).unlink()
    one_file = json.loads(obj(cache, outs["folder"]).read_text())[0]["md5"]
    obj(cache, one_file).unlink()
    # metrics.json (cache: false) is committed to git, so never reported even though no cache object exists
    assert team.missing_outputs(repo, revs.resolve(repo, "HEAD"), cache) == ["folder", "out.txt"]


def test_message_names_the_outputs_and_what_to_do():
    msg = team.describe("exp-1", [f"data/f{i}.npz" for i in range(8)], "origin")
    assert "\n" not in msg
    assert "exp-1: 8 outputs" in msg and "data/f0.npz" in msg and "and 2 more" in msg
    assert "`dvc exp push origin exp-1` (without --no-cache)" in msg


def test_review_workflow_runs_the_tested_team_flow():
    """.github/workflows/review.yml runs the commands tests/integration/test_team.py runs, in that order:
    repro.sh (pull first), push of outputs and run cache, the experiment pushed, the review posted."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    steps = yaml.safe_load((root / ".github" / "workflows" / "review.yml").read_text())["jobs"]["review"]["steps"]
    script = "\n".join(s.get("run", "") for s in steps)
    order = ["dvc remote modify --local storage url", "bash scripts/repro.sh", "fkstudy push",
             "dvc exp push", "bash scripts/review.sh", "cml comment update"]
    at = [script.find(cmd) for cmd in order]
    assert all(i >= 0 for i in at) and at == sorted(at), dict(zip(order, at))
    assert "PYTHONPATH" not in script


PARAM_STAGE = """stages:
  one:
    cmd: python one.py
    deps: [one.py]
    params: [a]
    outs: [one.txt]
    metrics:
      - m.json:
          cache: false
"""
ONE = """import json, yaml
a = yaml.safe_load(open("params.yaml"))["a"]
open("one.txt", "w").write(str(a) * 100)
json.dump({"a": a}, open("m.json", "w"))
"""


def test_pushed_run_outputs_let_a_clone_restore_a_param_set_it_never_ran(tmp_path):
    """A runs a=1 then a=7 and pushes (to a local-directory remote); B, a clone at a=7, sets a=1 back:
    with `dvc push --run-cache` only, B's `dvc repro --pull` ran the stage again (the run record came, its
    outputs did not: one.txt of a=1 was never in the workspace, m.json is `cache: false`); with the run
    cache's outputs pushed, it restores them."""
    a, remote = tmp_path / "a", tmp_path / "remote"
    a.mkdir()
    (a / "dvc.yaml").write_text(PARAM_STAGE)
    (a / "one.py").write_text(ONE)
    (a / "params.yaml").write_text("a: 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    dvc = [sys.executable, "-m", "dvc"]
    sh(a, "git", "init", "-q", "-b", "main")
    sh(a, *dvc, "init", "-q")
    sh(a, *dvc, "remote", "add", "-d", "storage", str(remote))
    sh(a, *dvc, "repro", "-q")
    (a / "params.yaml").write_text("a: 7\n")
    sh(a, *dvc, "repro", "-q")
    sh(a, *git, "add", "-A")
    sh(a, *git, "commit", "-qm", "a=7")
    sh(a, *dvc, "push", "--run-cache", "-q")

    def clone_and_go_back(name: str) -> str:
        b = tmp_path / name
        sh(tmp_path, "git", "clone", "-q", str(a), str(b))
        sh(b, *dvc, "pull", "--run-cache", "-q")
        (b / "params.yaml").write_text("a: 1\n")
        return sh(b, *dvc, "repro", "--pull")

    assert "Running stage 'one'" in clone_and_go_back("b1")
    runs, uploaded, failed = team.push_run_outputs(a)
    assert (runs, failed) == (2, 0) and uploaded >= 2   # one.txt and m.json of a=1 at least
    out = clone_and_go_back("b2")
    assert "Stage 'one' is cached - skipping run" in out and "Running stage" not in out, out
    assert json.loads((tmp_path / "b2" / "m.json").read_text()) == {"a": 1}
