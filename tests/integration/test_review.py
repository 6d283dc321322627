"""The review command (`scripts/review.sh`, `python -m fkstudy review`) on the real subset: a committed copy
of the reproduced repository, then `dvc exp run -S cluster.n_seeds=<n+1>` (an experiment applied to the
workspace). What the review must show is derived independently from the two revisions' files: the
metric values that differ in the metrics files, the dvc.lock entries that differ.

The report of the workspace review is printed (pytest -s) and kept as review_sample.md beside the
copy: the README's sample report comes from it."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from fkstudy.review import bands, cli

from .conftest import run

pytestmark = pytest.mark.integration
PARAM = "cluster.n_seeds"
EXP = "rv-seeds"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
VERDICTS = ("better", "worse", "within noise", "changed")
SPREAD = re.compile(r"_(std|ci95_low|ci95_high)$")


def env(repo: Path) -> dict:
    """This interpreter first on PATH (scripts/review.sh runs `python`; the copy has no .venv), and an
    MLflow store of the copy's own."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{repo.parent / 'review.db'}"}


def review(repo: Path, *args: str) -> str:
    proc = run([sys.executable, "-m", "fkstudy", "review", *args], repo,
               env={**env(repo), "PYTHONPATH": str(repo / "src")})
    return proc.stdout


def flat(node, prefix: str = "") -> dict:
    if not isinstance(node, dict):
        return {prefix: node}
    out = {}
    for k, v in node.items():
        out.update(flat(v, f"{prefix}.{k}" if prefix else k))
    return out


def lock_at(repo: Path, rev: str | None) -> dict:
    text = (repo / "dvc.lock").read_text() if rev is None else run(["git", "show", f"{rev}:dvc.lock"], repo).stdout
    return yaml.safe_load(text)["stages"]


def metrics_at(repo: Path, rev: str | None, path: str) -> dict:
    text = (repo / path).read_text() if rev is None else run(["git", "show", f"{rev}:{path}"], repo).stdout
    return flat(json.loads(text))


def metric_rows(report: str) -> dict[str, str]:
    """`<file>: <key>` -> verdict, for every metric row of the report."""
    return {m[1]: m[2] for m in re.finditer(r"^\| `([^`]+: [^`]+)` \|.*\| \*\*([a-z ]+)\*\* \|$", report, re.MULTILINE)}


@pytest.fixture(scope="module")
def rv_repo(reproduced, tmp_path_factory):
    """The reproduced subset repo copied and committed (the base), then `dvc exp run -n rv-seeds -S
    cluster.n_seeds=<n+1>` in its workspace: (repo, base sha, old value, new value)."""
    src, _ = reproduced
    dest = tmp_path_factory.mktemp("review") / "repo"
    shutil.copytree(src, dest, symlinks=True,
                    ignore=lambda d, names: {"cache", "tmp"} & set(names) if Path(d).name == ".dvc" else set())
    run(["dvc", "cache", "dir", "--local", str(src / ".dvc" / "cache")], dest)
    run([*GIT, "add", "-A"], dest)
    run([*GIT, "commit", "-qm", "reproduced subset"], dest)
    base = run(["git", "rev-parse", "HEAD"], dest).stdout.strip()
    old = yaml.safe_load((dest / "params.yaml").read_text())["cluster"]["n_seeds"]
    run(["dvc", "exp", "run", "-n", EXP, "-S", f"{PARAM}={old + 1}"], dest, env=env(dest))
    return dest, base, old, old + 1


@pytest.fixture(scope="module")
def workspace_review(rv_repo):
    """Exactly what CI runs: `bash scripts/review.sh <base>` (stdout, and reports/review.md)."""
    repo, base, _, _ = rv_repo
    out = run(["bash", "scripts/review.sh", base], repo, env=env(repo)).stdout
    assert (repo / "reports" / "review.md").read_text() == out
    (repo.parent / "review_sample.md").write_text(out)
    print("\n" + out)
    return out


def test_review_shows_the_param_the_moved_metrics_with_verdicts_and_the_stages(rv_repo, workspace_review):
    repo, base, old, new = rv_repo
    report = workspace_review
    summary = report.splitlines()[2]
    assert summary.startswith("**") and f"params changed: {PARAM} {old} → {new}" in summary, summary
    assert f"| `{PARAM}` | {old} | {new} |" in report
    assert "not reproduced" not in report  # the experiment left a reproduced workspace

    base_lock, new_lock = lock_at(repo, base), lock_at(repo, None)
    readers = {s for s, st in new_lock.items() if "cluster" in (st.get("params") or {}).get("params.yaml", {})}
    assert readers and all(s.startswith("cluster@") for s in readers)
    reran = {s for s in new_lock if s in base_lock and new_lock[s] != base_lock[s]}
    assert readers <= reran
    stage_rows = dict(re.findall(r"^\| `([^`]+)` \| re-ran \| (.*) \|$", report, re.MULTILINE))
    assert set(stage_rows) == reran, (set(stage_rows) ^ reran)
    assert all(f"params: {PARAM}" in stage_rows[s] for s in readers)
    assert f"{len(reran)} stages re-ran" in summary

    # every metric value that differs in the re-run stages' metrics files is in the (uncapped) report,
    # with a verdict; a cluster ARI has its seed spread as band
    full = review(repo, base, "--no-plots", "--max-rows", "10000")
    rows = metric_rows(full)
    expected = set()
    for stage in reran:
        for out in new_lock[stage].get("outs", []):
            path = out["path"]
            if not (path.startswith("metrics/") and path.endswith(".json")):
                continue
            before, after = metrics_at(repo, base, path), metrics_at(repo, None, path)
            short = path.removeprefix("metrics/").removesuffix(".json")
            for key in set(before) | set(after):
                parent = SPREAD.sub("", key)
                if SPREAD.search(key) and ({parent, parent + "_mean"} & set(after)):
                    continue
                if before.get(key) != after.get(key) and not key.endswith("seconds"):
                    expected.add(f"{short}: {key}")
    moved_ari = {name for name in expected if name.startswith("cluster/") and name.endswith(": ari")}
    assert moved_ari, expected
    assert set(rows) == expected, (set(rows) ^ expected)
    assert all(rows[name] in VERDICTS for name in rows)
    for name in moved_ari:
        line = next(line for line in full.splitlines() if line.startswith(f"| `{name}` |"))
        assert "(seed std)" in line, line
    other = full[full.index("other values changed (counts, settings)</summary>"):]
    assert f"| `{next(iter(moved_ari)).split(':')[0]}: tsne.n_seeds` | {old} | {new} |" in other
    counts = [int(n) for n in re.findall(
        r"(\d+) (?:metrics? moved beyond noise|within noise|changed with no noise|other values? changed)", summary)]
    assert sum(counts) == len(rows), (summary, len(rows))


def test_review_writes_the_plots_diff_page_of_the_changed_plots(rv_repo, workspace_review):
    repo, base, _, _ = rv_repo
    base_outs = {o["path"]: o.get("md5") for st in lock_at(repo, base).values() for o in st.get("outs", [])}
    new_outs = {o["path"]: o.get("md5") for st in lock_at(repo, None).values() for o in st.get("outs", [])}
    changed = {p for p in new_outs if p.startswith("plots/") and base_outs.get(p) != new_outs[p]}
    assert any(p.startswith("plots/cluster/") for p in changed), changed
    listed = set(re.findall(r"^\| `(plots/[^`]+)` \| changed \|$", workspace_review, re.MULTILINE))
    cap = cli.MAX_ROWS  # the first ones (default --max-rows), then a count
    assert listed == set(sorted(changed)[:cap])
    assert len(changed) <= cap or f"… and {len(changed) - cap} more." in workspace_review
    assert "`reports/review_plots/index.html`" in workspace_review
    html = (repo / "reports" / "review_plots" / "index.html").read_text()
    assert any(p in html for p in changed if p.endswith(".csv"))
    assert list((repo / "reports" / "review_plots" / "static").glob("*.png"))  # both revisions' images


def test_review_of_the_experiment_by_name_against_its_baseline(rv_repo, workspace_review):
    repo, base, old, new = rv_repo
    report = review(repo, "--target", EXP, "--no-plots", "--max-rows", "10000")
    assert report.startswith(f"## Review: `{base[:7]}` → experiment `{EXP}` (")  # default base: its baseline
    assert f"| `{PARAM}` | {old} | {new} |" in report
    workspace = review(repo, base, "--no-plots", "--max-rows", "10000")  # the experiment is applied there
    assert metric_rows(report) == metric_rows(workspace) and metric_rows(report)


def test_a_no_op_says_nothing_changed(rv_repo):
    repo, base, _, _ = rv_repo
    for args in ((base, "--target", "HEAD"), (EXP, "--target", EXP)):
        report = review(repo, *args)
        assert "Nothing changed between" in report and "###" not in report, report


def test_bootstrap_bands_come_from_the_predictions_behind_the_recorded_metrics(reproduced):
    """On the real subset, each stage's predictions file reproduces its recorded test accuracy and
    macro-F1 (so the band is of those numbers), for every stage that writes one per run."""
    repo, _ = reproduced
    checked = []
    for path in sorted(o["path"] for st in lock_at(repo, None).values() for o in st.get("outs", [])):
        owner = bands.metrics_file_of(path)
        if not owner or owner[0].startswith("metrics/multiseed/"):  # multiseed: first seed's predictions, mean metric
            continue
        values = metrics_at(repo, None, owner[0])
        actual, predicted = bands.read_predictions((repo / path).read_text())
        keys = [k for k in (f"{owner[1]}test_accuracy", f"{owner[1]}macro_f1") if k in values]
        widths = bands.half_widths(actual, predicted, {k: values[k] for k in keys}, owner[1], resamples=200)
        assert keys and set(widths) == set(keys), (path, keys, widths)
        assert all(0 < w < 0.5 for w in widths.values()), (path, widths)
        checked.append(path)
    assert any("text_classifier" in p for p in checked) and any("fusion" in p for p in checked), checked
