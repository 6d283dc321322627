"""fkstudy.lockfile: dvc.lock entries of stages dvc.yaml no longer defines (a matrix list shrank) are found, and
pruned with their undeclared outputs, the rest of dvc.lock left byte for byte."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from fkstudy import lockfile

ROOT = Path(__file__).resolve().parents[2]

DVC_YAML = """\
stages:
  feat:
    matrix:
      m: ${pipeline.feat}
    cmd: python stages/feat.py ${item.m}
    outs:
      - data/${item.m}.npz
    metrics:
      - metrics/${item.m}.json:
          cache: false
  report:
    cmd: python stages/report.py
    deps:
      - metrics
    outs:
      - reports/summary.csv:
          cache: false
"""


def entry(name: str, outs: list[str]) -> str:
    lines = [f"  {name}:", f"    cmd: python stages/x.py {name}", "    deps:", "    - path: src/x.py",
             "      hash: md5", "      md5: 0123", "    outs:"]
    for out in outs:
        lines += [f"    - path: {out}", "      hash: md5", "      md5: 4567"]
    return "\n".join(lines) + "\n"


@pytest.fixture()
def repo(tmp_path):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("pipeline:\n  feat: [a]\n")
    lock = ("schema: '2.0'\nstages:\n" + entry("feat@a", ["data/a.npz", "metrics/a.json"])
            + entry("feat@b", ["data/b.npz", "metrics/b.json", "reports/summary.csv"])
            + entry("report", ["reports/summary.csv"]))
    (tmp_path / "dvc.lock").write_text(lock)
    for rel in ("data/a.npz", "data/b.npz", "metrics/a.json", "metrics/b.json", "reports/summary.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    return tmp_path


def test_stale_entries_are_named_with_the_outputs_no_stage_declares(repo):
    # reports/summary.csv is declared by `report` too: never listed for removal
    assert lockfile.stale(repo) == {"feat@b": ["data/b.npz", "metrics/b.json"]}


def test_prune_removes_the_entry_and_its_outputs_and_keeps_the_rest_byte_for_byte(repo):
    before = (repo / "dvc.lock").read_text()
    assert lockfile.prune(repo) == {"feat@b": ["data/b.npz", "metrics/b.json"]}
    after = (repo / "dvc.lock").read_text()
    assert after == before.replace(entry("feat@b", ["data/b.npz", "metrics/b.json", "reports/summary.csv"]), "")
    assert set(yaml.safe_load(after)["stages"]) == {"feat@a", "report"}
    assert not (repo / "data/b.npz").exists() and not (repo / "metrics/b.json").exists()
    assert (repo / "metrics/a.json").exists() and (repo / "reports/summary.csv").exists()
    assert lockfile.stale(repo) == {} and lockfile.main(["--root", str(repo)]) == 0


def test_listing_exits_1_and_writes_nothing(repo, capsys):
    before = (repo / "dvc.lock").read_text()
    assert lockfile.main(["--root", str(repo)]) == 1
    assert "stale: feat@b  outputs: data/b.npz, metrics/b.json" in capsys.readouterr().out
    assert (repo / "dvc.lock").read_text() == before and (repo / "metrics/b.json").exists()


def test_the_repository_lock_holds_no_stale_entry():
    assert lockfile.stale(ROOT) == {}, "python -m fkstudy.lockfile --prune, then dvc repro (the report reads metrics/)"


def test_a_quoted_stage_name_is_cut_too():
    text = textwrap.dedent("""\
        schema: '2.0'
        stages:
          keep:
            cmd: a
          'gone@x':
            cmd: b
            outs:
            - path: p
        """)
    assert lockfile.without(text, {"gone@x"}) == "schema: '2.0'\nstages:\n  keep:\n    cmd: a\n"
