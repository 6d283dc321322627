"""The DVC workflow a user runs: experiments (workspace and queued in parallel), their MLflow runs,
`dvc metrics diff` and `dvc plots diff` — in a committed copy of the reproduced subset repository.

Expected stage lists are derived from dvc.lock (which stage reads which param, which stage reads
which other stage's outputs, which stage reads `mlflow.experiment` and so logs runs), so new stages
in dvc.yaml need no change here. The swept param is `fusion.n_splits`, read by one cheap stage
(fusion: an MLflow run with a logged model); every experiment gets a value of its own, lower than
the default, so none is restored from DVC's run cache (a run-cache hit runs nothing and logs
nothing) and each is quicker than the baseline."""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from .conftest import ROOT, run, run_queue, stop_workers

pytestmark = pytest.mark.integration
PARAM = "fusion.n_splits"
VALUES = {"wf-sweep": 2, "wf-queue-a": 3, "wf-queue-b": 4}  # default 5
TRACKED = "mlflow.experiment"  # the stages that read it log MLflow runs
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
RUNNING = re.compile(r"^Running stage '([^']+)'", re.M)


def ran_stages(output: str) -> set[str]:
    return set(RUNNING.findall(output))


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def lock_stages(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def param_readers(lock: dict, key: str) -> set[str]:
    """Stages whose recorded params include `key` (listed as itself or as one of its parents)."""
    return {name for name, st in lock.items()
            for params in (st.get("params") or {}).values() for k in params
            if key == k or key.startswith(k + ".")}


def feeds(lock: dict, upstream: str, stage: str) -> bool:
    """`stage` depends on an output (or a folder holding one) of `upstream`."""
    return any(_overlap(d["path"], o["path"]) for d in lock[stage].get("deps", [])
               for o in lock[upstream].get("outs", []))


def downstream(lock: dict, names: set[str]) -> set[str]:
    found = set(names)
    while True:
        more = {s for s in lock if s not in found and any(feeds(lock, u, s) for u in found)}
        if not more:
            return found
        found |= more


def experiments(exp_show: list) -> dict[str, dict]:
    """name -> {"rev", "params", "metrics"} for every named experiment in `dvc exp show --json`."""
    out = {}

    def walk(node):
        if isinstance(node, dict):
            if node.get("name") and isinstance(node.get("data"), dict):
                data = node["data"]
                out[node["name"]] = {
                    "rev": node.get("rev"),
                    "params": {f: v.get("data", {}) for f, v in (data.get("params") or {}).items()},
                    "metrics": {f: v.get("data", {}) for f, v in (data.get("metrics") or {}).items()}}
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(exp_show)
    return out


def dotted(d: dict, key: str):
    for part in key.split("."):
        d = d[part]
    return d


def store_env(path: Path) -> dict:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{path}"}


@pytest.fixture(scope="module")
def wf_repo(reproduced, tmp_path_factory) -> Iterator[Path]:
    """The reproduced subset repo copied and committed (dvc.lock, metrics, plots): a baseline like a
    real checkout. The copy shares the DVC cache; the session's repo is left untouched."""
    src, _ = reproduced
    dest = tmp_path_factory.mktemp("workflow") / "repo"
    shutil.copytree(src, dest, symlinks=True,
                    ignore=lambda d, names: {"cache", "tmp"} & set(names) if Path(d).name == ".dvc" else set())
    run(["dvc", "cache", "dir", "--local", str(src / ".dvc" / "cache")], dest)
    run([*GIT, "add", "-A"], dest)
    run([*GIT, "commit", "-qm", "reproduced subset"], dest)
    assert run(["git", "status", "--porcelain"], dest).stdout.strip() == ""
    yield dest
    stop_workers(dest)


@pytest.fixture(scope="module")
def workspace_exp(wf_repo):
    """`dvc exp run -S fusion.n_splits=2` in the workspace: (name, value, output, seconds)."""
    assert dotted(yaml.safe_load((wf_repo / "params.yaml").read_text()), PARAM) not in VALUES.values()
    name = "wf-sweep"
    t0 = time.perf_counter()
    proc = run(["dvc", "exp", "run", "-n", name, "-S", f"{PARAM}={VALUES[name]}"], wf_repo,
               env=store_env(wf_repo.parent / "workspace.db"))
    return name, VALUES[name], proc.stdout + proc.stderr, time.perf_counter() - t0


def test_exp_run_reruns_the_param_readers_and_their_downstream_only(wf_repo, workspace_exp):
    _, _, out, seconds = workspace_exp
    lock = lock_stages(wf_repo)
    readers = param_readers(lock, PARAM)
    assert readers, f"no stage reads {PARAM} in dvc.lock"
    ran = ran_stages(out)
    allowed = downstream(lock, readers)
    assert readers <= ran, out
    assert ran <= allowed, f"re-ran stages that neither read {PARAM} nor follow one that does: {ran - allowed}"
    for stage in ran - readers:  # each re-run is explained by a re-run stage it reads from
        assert any(feeds(lock, u, stage) for u in ran - {stage}), stage
    assert len(ran) < len(lock) / 2, ran  # nothing upstream: a small part of the pipeline
    print(f"exp run: {sorted(ran)} of {len(lock)} stages in {seconds:.0f} s")


def test_exp_show_lists_the_experiment_with_params_and_metrics(wf_repo, workspace_exp):
    name, value, _, _ = workspace_exp
    exps = experiments(json.loads(run(["dvc", "exp", "show", "--json"], wf_repo).stdout))
    assert name in exps, sorted(exps)
    exp = exps[name]
    assert dotted(exp["params"]["params.yaml"], PARAM) == value
    readers = param_readers(lock_stages(wf_repo), PARAM)
    metric_files = {o["path"] for st in readers for o in lock_stages(wf_repo)[st].get("outs", [])
                    if o["path"].startswith("metrics/")}
    assert metric_files and metric_files <= set(exp["metrics"]), (metric_files, sorted(exp["metrics"]))
    assert all(exp["metrics"][f] for f in metric_files)  # the values, not just the file names


def test_metrics_diff_between_baseline_and_experiment(wf_repo, workspace_exp):
    name, _, _, _ = workspace_exp
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", name, "--json"], wf_repo).stdout)
    changed = {(f, k) for f, metrics in diff.items() for k, v in metrics.items() if v.get("old") != v.get("new")}
    files = {f for f, _ in changed}
    lock = lock_stages(wf_repo)
    swept = {o["path"] for st in param_readers(lock, PARAM) for o in lock[st].get("outs", [])}
    assert files & swept, (files, swept)  # the swept stage's metrics moved
    for f, key in changed:  # named for humans: words joined by dots, never list indexes or generated ids
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", key), (f, key)
    assert any(re.search(r"accuracy|f1|ari", k) for _, k in changed), changed
    table = run(["dvc", "metrics", "diff", "HEAD", name], wf_repo).stdout  # the human table
    assert "Change" in table and name in table and all(f in table for f in files), table


def test_plots_diff_renders_every_declared_plot(wf_repo, workspace_exp, tmp_path):
    """`dvc plots diff HEAD <exp> -o dir`: index.html holds every plot declared in dvc.yaml (as
    `dvc plots show` resolves them), images of both revisions copied beside it, data of both
    revisions in the plot the experiment changed."""
    name, _, _, _ = workspace_exp
    shown = json.loads(run(["dvc", "plots", "show", "--json"], wf_repo).stdout)
    plots = shown.get("data", shown)
    assert plots and not shown.get("errors"), shown.get("errors")
    out = tmp_path / "plots_diff"
    run(["dvc", "plots", "diff", "HEAD", name, "-o", str(out)], wf_repo)
    html = (out / "index.html").read_text()
    assert len(html) > 10_000
    missing = [p for p in plots if f">{p}<" not in html and f'"{p}"' not in html]
    assert not missing, missing
    images = re.findall(r'src="(static/[^"]+)"', html)
    n_images = sum(1 for renders in plots.values() if any(r.get("type") == "image" for r in renders))
    assert len(images) == 2 * n_images, (len(images), n_images)  # one per revision
    assert all((out / i).stat().st_size > 0 for i in images)
    lock = lock_stages(wf_repo)
    swept = {o["path"] for st in param_readers(lock, PARAM) for o in lock[st].get("outs", [])}
    assert any(p in swept for p in plots), swept  # the experiment changed a declared plot: both revisions drawn
    assert f'"rev": "{name}"' in html and '"rev": "HEAD"' in html


def test_queued_experiments_in_parallel_share_one_tracking_store(wf_repo, workspace_exp):
    """Two experiments queued and run by `dvc queue start -j 2` in temp copies under .dvc/tmp/exps,
    both writing to one fresh SQLite store (nobody created it beforehand): both succeed, each
    experiment's MLflow runs carry its DVC experiment name, no run or model is lost, and the store is
    consistent and unlocked afterwards. Measured before the store lock in fkstudy.tracking: one of
    the two failed in MLflow's schema migration ("duplicate column name: step")."""
    db = wf_repo.parent / "queue.db"
    env = store_env(db)
    lock = lock_stages(wf_repo)
    targets = sorted(param_readers(lock, PARAM))
    queued = {n: v for n, v in VALUES.items() if n != workspace_exp[0]}
    for name, value in queued.items():
        run(["dvc", "exp", "run", "--queue", *targets, "-n", name, "-S", f"{PARAM}={value}"], wf_repo, env=env)
    t0 = time.perf_counter()
    status = run_queue(wf_repo, {**os.environ, **env}, jobs=2)
    seconds = time.perf_counter() - t0
    logs = {n: run(["dvc", "queue", "logs", n], wf_repo, env=env, check=False).stdout for n in queued}
    for name in queued:
        assert re.search(rf"{name}\s.*\bSuccess\b", status), f"{status}\n{logs[name][-4000:]}"
    exps = experiments(json.loads(run(["dvc", "exp", "show", "--json"], wf_repo).stdout))
    for name, value in queued.items():
        assert dotted(exps[name]["params"]["params.yaml"], PARAM) == value
        assert set(targets) <= ran_stages(logs[name]), logs[name][-4000:]

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(
        yaml.safe_load((wf_repo / "params.yaml").read_text())["mlflow"]["experiment"])
    assert experiment is not None and ".dvc/tmp" not in experiment.artifact_location, experiment
    runs = client.search_runs([experiment.experiment_id])
    by_exp = {}
    for r in runs:
        by_exp.setdefault(r.data.tags.get("dvc_exp_name"), []).append(r)
    assert set(by_exp) == set(queued), {k: len(v) for k, v in by_exp.items()}
    tracked = param_readers(lock, TRACKED)
    for name, value in queued.items():
        expected = sorted(ran_stages(logs[name]) & tracked)
        assert expected, (name, ran_stages(logs[name]), tracked)
        top = sorted(r.data.tags["stage"] for r in by_exp[name] if "mlflow.parentRunId" not in r.data.tags)
        assert top == expected, (name, top)  # one top-level run per tracked stage the experiment ran
        assert all(r.info.status == "FINISHED" for r in by_exp[name]), name
        for r in by_exp[name]:
            if PARAM.split(".")[0] == r.data.tags["stage"]:
                assert r.data.params[PARAM.split(".", 1)[1]] == str(value)
    models = client.search_logged_models([experiment.experiment_id])
    assert models
    for m in models:  # model files live beside the store, not in the deleted temp copies
        path = Path(m.artifact_location.removeprefix("file://"))
        assert ".dvc/tmp" not in str(path) and path.is_dir() and any(path.iterdir()), m.artifact_location

    con = sqlite3.connect(db, timeout=0)  # nobody holds a lock any more
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.execute("BEGIN IMMEDIATE")
        con.rollback()
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    overlap = len(spans) > 1 and spans[1][0] < spans[0][1]
    print(f"queue -j 2: {len(queued)} experiments in {seconds:.0f} s, {len(runs)} MLflow runs "
          f"({'overlapping' if overlap else 'not overlapping'}), {len(models)} logged models")


WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {src!r})
import mlflow
from fkstudy import tracking
Path(sys.argv[1] + ".ready").touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
for k in range(3):
    with tracking.run("fk-concurrency", "stress", f"{{sys.argv[3]}}-{{k}}", {{"k": k, "worker": sys.argv[3]}}):
        mlflow.log_metrics({{f"m{{j}}": j * k for j in range(10)}})
        for step in range(5):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
"""


def test_parallel_writers_on_a_fresh_store(tmp_path):
    """Four processes start writing to a SQLite store that does not exist yet, released at the same
    instant. Without the store lock in fkstudy.tracking this failed in 3 of 4 processes (schema
    migrations racing: "duplicate column name", alembic "expected to match one row")."""
    db = tmp_path / "fresh.db"
    env = {**os.environ, **store_env(db), "DVC_EXP_NAME": ""}
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER.format(src=str(ROOT / "src")), str(tmp_path / f"w{i}"),
                               str(go), f"w{i}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(4)]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"w{i}.ready").exists() for i in range(4)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            pytest.fail("writers did not start:\n" + "\n".join(p.communicate()[0][-2000:] for p in procs))
        time.sleep(0.1)
    assert not db.exists()
    go.touch()
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(o[-2000:] for o in outputs)
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("fk-concurrency").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(f"w{i}-{k}" for i in range(4) for k in range(3))
    assert all(len(r.data.metrics) == 11 and r.info.status == "FINISHED" for r in runs)
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 5 for r in runs)
