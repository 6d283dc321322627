"""A team on several machines, end to end against real servers on 127.0.0.1 (README "A team: more machines").

The test starts an S3 API (moto's server) holding the team's bucket, a throwaway PostgreSQL and an
`mlflow server` on it that proxies artifacts into the bucket, and a bare git repository as `origin`. Clients
get the MLflow server's URL and no bucket credentials (no AWS_* variable); DVC reads its own from
.dvc/config.local, as a team member's clone would.

- Clone A is the session's reproduced subset repository, committed and pushed to origin. Its first
  `fkstudy push` (`dvc push --run-cache` and the outputs of the recorded runs) is killed as soon as objects
  land in the bucket; the second completes.
- Clone B is a fresh `git clone` running the README's first command as written, `bash scripts/repro.sh`: its
  own .venv in seconds, the pull of outputs and run cache, a `dvc repro` that runs nothing, the review by
  the `fkstudy` command (no PYTHONPATH). Every object comes through DVC's md5 check (`verify`), so nothing
  the killed push left is corrupt. Then B queues two experiments run by `dvc queue start -j 2` against
  the fresh MLflow server (one MLflow experiment results, not two), pushes one with its outputs and one
  without, changes a param (only its readers and what follows re-run) and changes it back:
  `dvc repro --pull` restores from A's run cache every stage DVC keeps run records of.
- A pulls the experiments with `fkstudy exp-pull` (the one pushed without outputs is named as such), shows
  and reviews one, then registers the model with the `register` stage; B loads it from
  `models:/flipkart-product-classifier@champion` and predicts what A's register stage predicted.
- Clone C, a newcomer whose remote cannot be reached, runs `bash scripts/repro.sh ingest`: one line says
  so and the stage is computed; no half-written object is left in its cache. An object corrupted in the
  bucket is refused on pull, naming the output.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import run_queue, set_params, stop_workers
from .test_postgres_mlflow import Postgres, free_port, postgres_bindir
from .test_workflow import dotted, downstream, experiments, feeds, lock_stages, param_readers, ran_stages

pytestmark = pytest.mark.integration
BUCKET = "fkstudy-team"
REMOTE = "storage"   # the remote .dvc/config defines; clones point it at the bucket in .dvc/config.local
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
MODEL = "flipkart-product-classifier"
# a cheap stage that logs an MLflow run (the Word2Vec it trains) and writes a DVC-cached output (its features)
QUEUE_PARAM, QUEUE_TARGET = "text_features.word2vec.epochs", "text_features@word2vec"
QUEUED = {"team-w20": 20, "team-w30": 30}   # default 50: new outputs, never run before
CHANGED_PARAM, CHANGED_VALUE = "gradcam.alpha", 0.6   # default 0.4; gradcam logs no MLflow run
CACHED = re.compile(r"^Stage '([^']+)' is cached - skipping run", re.M)


def sh(cmd: list, cwd: Path, env: dict, check: bool = True, timeout: int = 1800) -> subprocess.CompletedProcess:
    """A command with exactly this environment (no inherited AWS_* credentials)."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}) in {cwd}:\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def wait_for(check, what: str, seconds: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: exited {proc.returncode}\n{log.read_text()[-3000:] if log else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready after {seconds:.0f} s\n{log.read_text()[-3000:] if log else ''}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(20)


class Background:
    """A command started now and collected later: another clone's work overlapping this one's (2 cores, and
    much of a failed pull or an upload is waiting)."""

    def __init__(self, cmd: list, cwd: Path, env: dict, log: Path):
        self.cmd, self.t0 = [str(c) for c in cmd], time.time()
        self.out, self.err = log.with_suffix(".out"), log.with_suffix(".err")
        self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=env, stdout=open(self.out, "w"),
                                     stderr=open(self.err, "w"), start_new_session=True)

    def result(self, timeout: int = 1800) -> tuple[subprocess.CompletedProcess, float]:
        """(the finished process, seconds until its last output)."""
        rc = self.proc.wait(timeout)
        seconds = max(self.out.stat().st_mtime, self.err.stat().st_mtime) - self.t0
        return subprocess.CompletedProcess(self.cmd, rc, self.out.read_text(), self.err.read_text()), seconds

    def stop(self) -> None:
        stop(self.proc)


class S3:
    """moto's S3 server on 127.0.0.1 (a real HTTP S3 API, in its own process) and a client of it."""

    def __init__(self, base: Path):
        self.port, self.log = free_port(), base / "moto.log"
        self.key, self.secret = "team-key", secrets.token_hex(16)
        self.proc = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3":
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close() is None,
                 "moto server", 120, self.proc, self.log)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret)

    def keys(self, prefix: str) -> dict[str, dict]:
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            out.update({o["Key"]: o for o in page.get("Contents", [])})
        return out


class MlflowServer:
    """`mlflow server` on PostgreSQL, artifacts proxied into s3://<bucket>/mlflow: only the server holds
    bucket credentials."""

    def __init__(self, base: Path, backend: str, s3: S3):
        self.port, self.log, self.backend, self.s3 = free_port(), base / "mlflow.log", backend, s3
        self.proc = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MlflowServer":
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.s3.key, "AWS_SECRET_ACCESS_KEY": self.s3.secret,
               "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_S3_ENDPOINT_URL": self.s3.endpoint}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", self.backend, "--artifacts-destination", f"s3://{BUCKET}/mlflow",
             "--workers", "1"],
            env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        return self  # migrations of the fresh database run meanwhile: wait() before the first use

    def wait(self) -> "MlflowServer":
        wait_for(lambda: urllib.request.urlopen(f"{self.uri}/health", timeout=5).status == 200, "mlflow server",
                 600, self.proc, self.log)
        return self


@dataclass
class Servers:
    s3: S3
    mlflow: MlflowServer
    origin: Path
    base: Path


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("team")
    s3 = pg = ml = None
    try:
        s3 = S3(base).start()
        pg = Postgres(postgres_bindir()).start()
        ml = MlflowServer(base, pg.create_database("mlflow_team"), s3).start()
        origin = base / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
        yield Servers(s3, ml, origin, base)
    finally:
        stop(ml.proc if ml else None)
        if pg:
            pg.stop()
        stop(s3.proc if s3 else None)


def client_env(repo: Path, servers: Servers, **extra) -> dict:
    """A team member's environment: the MLflow server's URL, no bucket credentials, the clone's own .venv
    first on PATH once scripts/setup.sh has made it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "MLFLOW_S3_ENDPOINT_URL"}
    env.update(MLFLOW_TRACKING_URI=servers.mlflow.uri, DVC_NO_ANALYTICS="1", **extra)
    venv = repo / ".venv"
    if (venv / "bin").is_dir():
        env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv))
    return env


def point_remote(repo: Path, servers: Servers, endpoint: str | None = None, cache_dir: Path | None = None) -> None:
    """.dvc/config.local as a team member writes it: the bucket, its endpoint and DVC's credentials."""
    s3 = servers.s3
    text = (f"['remote \"{REMOTE}\"']\n    url = s3://{BUCKET}/dvc\n    endpointurl = {endpoint or s3.endpoint}\n"
            f"    region = us-east-1\n    access_key_id = {s3.key}\n    secret_access_key = {s3.secret}\n")
    if cache_dir:
        text += f"[cache]\n    dir = {cache_dir}\n"
    (repo / ".dvc" / "config.local").write_text(text)


def raw_dir(repo: Path) -> str:
    return yaml.safe_load((repo / "params.yaml").read_text())["data"]["raw_dir"]


def cache_objects(repo: Path) -> dict[str, Path]:
    """md5 (with .dir) -> file, for every object of the clone's own cache."""
    root = repo / ".dvc" / "cache" / "files" / "md5"
    return {p.parent.name + p.name: p for p in root.glob("*/*")} if root.is_dir() else {}


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- clone A: the reproduced study, pushed

@dataclass
class CloneA:
    repo: Path
    env: dict
    killed_running: bool
    objects_at_kill: int
    second_push: str
    push_seconds: float
    objects: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def clone_a(reproduced, servers) -> CloneA:
    src, _ = reproduced
    repo = servers.base / "a"
    shutil.copytree(src, repo, symlinks=True,
                    ignore=lambda d, names: {"cache", "tmp"} & set(names) if Path(d).name == ".dvc" else set())
    point_remote(repo, servers, cache_dir=src / ".dvc" / "cache")   # the session's cache, read only here
    sh(["bash", "scripts/setup.sh"], repo, client_env(repo, servers, FLIPKART_DATA=raw_dir(repo)))  # its .venv
    env = client_env(repo, servers)
    sh([*GIT, "add", "-A"], repo, env)
    sh([*GIT, "commit", "-qm", "reproduced subset"], repo, env)
    sh(["git", "remote", "add", "origin", servers.origin], repo, env)
    sh(["git", "push", "-q", "origin", "main"], repo, env)

    # `fkstudy push` (dvc push --run-cache, then the outputs of the runs it records), killed as soon as data
    # objects land in the bucket, then run again
    push = subprocess.Popen(["fkstudy", "push"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: servers.s3.keys("dvc/files/") or push.poll() is not None, "first object pushed", 600)
    killed_running = push.poll() is None
    os.killpg(push.pid, signal.SIGKILL)
    push.wait(30)
    at_kill = len(servers.s3.keys("dvc/"))
    t0 = time.perf_counter()
    second = sh(["fkstudy", "push"], repo, env)
    return CloneA(repo, env, killed_running, at_kill, second.stdout + second.stderr, time.perf_counter() - t0,
                  servers.s3.keys("dvc/"))


def test_a_push_killed_midway_completes_when_run_again(clone_a):
    assert clone_a.killed_running, "the first push ended before it could be killed: nothing tested"
    m = re.search(r"(\d+) files? pushed", clone_a.second_push)
    assert m and int(m[1]) > 0, clone_a.second_push   # the re-run uploaded what the killed one had not
    assert re.search(r"run cache: the outputs of [1-9]\d* runs are on the remote", clone_a.second_push)
    assert 0 < clone_a.objects_at_kill < len(clone_a.objects), (clone_a.objects_at_kill, len(clone_a.objects))
    cloud = json.loads(sh(["dvc", "status", "--cloud", "--json"], clone_a.repo, clone_a.env).stdout or "{}")
    assert cloud == {}, cloud   # every output of the workspace is in the bucket
    print(f"\nA: push killed with {clone_a.objects_at_kill} objects in the bucket; the re-run pushed the rest "
          f"({len(clone_a.objects)} objects) in {clone_a.push_seconds:.0f} s")


# ---------------------------------------------------------------- clone B: a fresh clone, the README's command

@dataclass
class CloneB:
    repo: Path
    env: dict
    repro: subprocess.CompletedProcess
    seconds: float
    runs_after_pull: int


@pytest.fixture(scope="module")
def clone_b(clone_a, servers, newcomer_started) -> CloneB:
    repo = servers.base / "b"
    sh(["git", "clone", "-q", servers.origin, repo], servers.base, client_env(servers.base, servers))
    point_remote(repo, servers)
    env = client_env(repo, servers, FLIPKART_DATA=raw_dir(repo))
    t0 = time.perf_counter()
    proc = sh(["bash", "scripts/repro.sh"], repo, env, check=False)
    seconds = time.perf_counter() - t0
    runs = sum(1 for p in (repo / ".dvc" / "cache" / "runs").rglob("*") if p.is_file())
    return CloneB(repo, client_env(repo, servers), proc, seconds, runs)


def test_b_repro_sh_pulls_and_runs_nothing(clone_b, clone_a):
    out = clone_b.repro.stdout + clone_b.repro.stderr
    assert clone_b.repro.returncode == 0, out[-6000:]
    assert f"repro: pulled from the DVC remote '{REMOTE}'" in out, out[-3000:]
    assert ran_stages(out) == set(), ran_stages(out)
    assert "Nothing changed between" in out   # the closing review, by the fkstudy command (no PYTHONPATH)
    assert (clone_b.repo / ".venv" / "bin" / "fkstudy").exists()
    status = sh(["dvc", "status", "--json"], clone_b.repo, clone_b.env).stdout
    assert json.loads(status or "{}") == {}, status
    assert sh(["git", "status", "--porcelain"], clone_b.repo, clone_b.env).stdout == ""
    assert clone_b.runs_after_pull > 0   # A's run cache came along
    # every object came through DVC's md5 check (remote `verify`), none from the killed push is damaged
    objects = cache_objects(clone_b.repo)
    assert objects and all(md5_of(p) == h.removesuffix(".dir") for h, p in objects.items())
    pulled = re.search(r"repro: pulled from .* in (\d+) s", out)
    print(f"\nB: bash scripts/repro.sh on a fresh clone (setup, pull, no-op repro, review) {clone_b.seconds:.0f} s, "
          f"of which the pull {pulled[1]} s; {len(objects)} objects")


# ---------------------------------------------------------------- B: queued experiments, one MLflow server

@pytest.fixture(scope="module")
def queued(clone_b, servers) -> dict:
    import mlflow

    repo, env = clone_b.repo, clone_b.env
    servers.mlflow.wait()
    client = mlflow.MlflowClient(tracking_uri=servers.mlflow.uri)
    experiment = yaml.safe_load((repo / "params.yaml").read_text())["mlflow"]["experiment"]
    before = client.get_experiment_by_name(experiment)
    targets = [QUEUE_TARGET]
    assert QUEUE_TARGET in param_readers(lock_stages(repo), QUEUE_PARAM)
    for name, value in QUEUED.items():
        sh(["dvc", "exp", "run", "--queue", *targets, "-n", name, "-S", f"{QUEUE_PARAM}={value}"], repo, env)
    t0 = time.perf_counter()
    try:
        status = run_queue(repo, env, jobs=2)
    finally:
        stop_workers(repo)
    logs = {n: sh(["dvc", "queue", "logs", n], repo, env, check=False).stdout for n in QUEUED}
    return {"before": before, "status": status, "logs": logs, "targets": targets, "experiment": experiment,
            "seconds": time.perf_counter() - t0}


def test_b_two_queue_workers_share_one_mlflow_experiment(queued, clone_b, servers):
    import mlflow

    assert queued["before"] is None   # both workers found no experiment and raced to create it
    for name in QUEUED:
        assert re.search(rf"{name}\s.*\bSuccess\b", queued["status"]), \
            f"{queued['status']}\n{queued['logs'][name][-3000:]}"
        assert set(queued["targets"]) <= ran_stages(queued["logs"][name])
    client = mlflow.MlflowClient(tracking_uri=servers.mlflow.uri)
    same = client.search_experiments(filter_string=f"name = '{queued['experiment']}'")
    assert len(same) == 1, same
    runs = client.search_runs([same[0].experiment_id])
    by_exp = {}
    for r in runs:
        by_exp.setdefault(r.data.tags.get("dvc_exp_name"), []).append(r)
    assert set(by_exp) == set(QUEUED), {k: len(v) for k, v in by_exp.items()}
    for name, value in QUEUED.items():
        top = [r for r in by_exp[name] if "mlflow.parentRunId" not in r.data.tags]
        assert sorted(r.data.tags["stage"] for r in top) == queued["targets"]
        assert all(r.info.status == "FINISHED" for r in by_exp[name])
        assert top[0].data.params[QUEUE_PARAM.rsplit(".", 1)[1]] == str(value)
    assert same[0].artifact_location.startswith("mlflow-artifacts:")   # proxied by the server (into the bucket)
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs if "mlflow.parentRunId" not in r.data.tags)
    print(f"\nB: queue -j 2, {len(QUEUED)} experiments in {queued['seconds']:.0f} s "
          f"({'overlapping' if spans[1][0] < spans[0][1] else 'not overlapping'}), {len(runs)} runs, one experiment")


# ---------------------------------------------------------------- experiments from B to A

@pytest.fixture(scope="module")
def exps_in_a(queued, clone_a, clone_b, servers) -> dict:
    a, b = clone_a.repo, clone_b.repo
    with_outputs, without = sorted(QUEUED)
    sh(["dvc", "exp", "push", "--no-cache", "origin", without], b, clone_b.env)
    sh(["dvc", "exp", "push", "origin", with_outputs], b, clone_b.env)
    env = clone_a.env
    fk = str(a / ".venv" / "bin" / "fkstudy")
    return {"without": without, "with": with_outputs, "env": env,
            "missing": sh([fk, "exp-pull", "origin", without], a, env, check=False),
            "pulled": sh([fk, "exp-pull", "origin", with_outputs], a, env, check=False),
            "show": json.loads(sh(["dvc", "exp", "show", "--json"], a, env).stdout),
            "review": sh([fk, "review", "main", "--target", with_outputs, "--no-plots"], a, env, check=False)}


def test_a_pulls_shows_and_reviews_b_s_experiment(exps_in_a, clone_a):
    name = exps_in_a["with"]
    assert exps_in_a["pulled"].returncode == 0, exps_in_a["pulled"].stderr
    assert f"{name}: pulled with its outputs" in exps_in_a["pulled"].stdout
    exp = experiments(exps_in_a["show"]).get(name)
    assert exp, sorted(experiments(exps_in_a["show"]))
    assert dotted(exp["params"]["params.yaml"], QUEUE_PARAM) == QUEUED[name]
    review = exps_in_a["review"]
    assert review.returncode == 0, review.stderr
    row = next((x for x in review.stdout.splitlines() if x.startswith(f"| `{QUEUE_PARAM}` |")), "")
    cells = [c.strip() for c in row.strip("| ").split("|")]
    assert len(cells) == 3 and cells[2] == str(QUEUED[name]) and cells[1] != cells[2], review.stdout[:3000]
    assert re.search(rf"^\| `{re.escape(QUEUE_TARGET)}` \| re-ran", review.stdout, re.M), review.stdout


def test_pulling_an_experiment_pushed_without_outputs_names_them(exps_in_a, clone_a):
    proc, name = exps_in_a["missing"], exps_in_a["without"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and f"experiment {name}:" in lines[0] and "--no-cache" in lines[0], proc.stderr
    lock, a = lock_stages(clone_a.repo), clone_a.repo
    cached = {o["path"] for o in lock[QUEUE_TARGET]["outs"]
              if not sh(["git", "ls-files", o["path"]], a, exps_in_a["env"]).stdout}   # not committed: DVC's
    named = re.search(r"pushed without them\): (.*?)\. Whoever", lines[0])
    assert cached and named and set(named[1].split(", ")) == cached, (cached, lines[0])


# ---------------------------------------------------------------- B: a param changed, then changed back

@pytest.fixture(scope="module")
def param_round_trip(clone_b, exps_in_a, register_started) -> dict:
    repo, env = clone_b.repo, clone_b.env
    set_params(repo, {CHANGED_PARAM: CHANGED_VALUE})
    t0 = time.perf_counter()
    changed = sh(["dvc", "repro", "--pull"], repo, env)   # as scripts/repro.sh runs it with the remote up
    t1 = time.perf_counter()
    sh(["git", "checkout", "--", "params.yaml"], repo, env)
    back = sh(["dvc", "repro", "--pull"], repo, env)
    return {"changed": changed.stdout + changed.stderr, "back": back.stdout + back.stderr,
            "seconds": (t1 - t0, time.perf_counter() - t1)}


def test_b_param_change_runs_its_readers_and_what_follows_only(param_round_trip, clone_b):
    lock = lock_stages(clone_b.repo)
    readers = param_readers(lock, CHANGED_PARAM)
    ran = ran_stages(param_round_trip["changed"])
    assert readers and readers <= ran, (readers, ran)
    assert ran <= downstream(lock, readers), ran - downstream(lock, readers)
    for stage in ran - readers:
        assert any(feeds(lock, u, stage) for u in ran - {stage}), stage
    print(f"\nB: {CHANGED_PARAM}={CHANGED_VALUE} re-ran {sorted(ran)} in {param_round_trip['seconds'][0]:.0f} s")


def unrecorded(repo: Path) -> dict[str, list[str]]:
    """stage -> the outputs for which DVC keeps no run record of it: a `cache: false` output that is not a
    metric or plot (DVC then saves no run, dvc/stage/__init__.py Stage.run), or a persistent one."""
    from contextlib import chdir

    from dvc.repo import Repo

    with chdir(repo), Repo(str(repo)) as dvc_repo:   # addressing is relative to the cwd
        return {s.addressing: [o.def_path for o in s.outs if o.persist or not (o.use_cache or o.is_metric or o.is_plot)]
                for s in dvc_repo.index.stages}


def test_b_param_set_a_ran_is_restored_from_the_run_cache(param_round_trip, clone_b):
    """Back to A's params: every stage DVC keeps run records of is restored from A's (`fkstudy push` put
    their outputs on the remote, `dvc repro --pull` fetched them) with A's dvc.lock entry; the others run."""
    repo, back = clone_b.repo, param_round_trip["back"]
    blockers = {s: outs for s, outs in unrecorded(repo).items() if outs}
    ran = ran_stages(param_round_trip["changed"])
    recordable = ran - set(blockers)
    assert recordable, (ran, blockers)   # the param's reader at least: otherwise nothing is tested here
    assert recordable <= set(CACHED.findall(back)), back[-3000:]
    assert ran_stages(back) <= ran & set(blockers), back[-3000:]
    at_a = yaml.safe_load(sh(["git", "show", "HEAD:dvc.lock"], repo, clone_b.env).stdout)["stages"]
    now = lock_stages(repo)
    assert all(now[s] == at_a[s] for s in recordable), [s for s in recordable if now[s] != at_a[s]]
    print(f"B: back to A's params in {param_round_trip['seconds'][1]:.0f} s: {sorted(recordable)} restored from A's "
          f"run cache; {sorted(ran_stages(back))} ran again (no run record: "
          f"{ {s: blockers[s] for s in ran_stages(back)} })")


# ---------------------------------------------------------------- the model: registered from A, served in B

@pytest.fixture(scope="module")
def register_started(clone_a, exps_in_a, servers, request) -> Background:
    """A registers the model (its `register` stage against the MLflow server), in the background while B
    changes a param."""
    job = Background(["dvc", "repro", "-f", "-s", "register"], clone_a.repo, exps_in_a["env"],
                     servers.base / "a-register")
    request.addfinalizer(job.stop)
    return job


@pytest.fixture(scope="module")
def registered(register_started, clone_a) -> dict:
    proc, _ = register_started.result()
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((clone_a.repo / "reports" / "register.json").read_text())


PREDICT = """
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/{model}@champion")
print(model.predict(pd.DataFrame(json.loads(sys.argv[1]))).to_json(orient="records"))
"""


def test_model_registered_from_a_predicts_in_b(registered, clone_a, clone_b, servers):
    import mlflow

    assert registered["promoted"] and registered["alias"] == "champion", registered
    version = mlflow.MlflowClient(tracking_uri=servers.mlflow.uri).get_model_version_by_alias(MODEL, "champion")
    assert int(version.version) == registered["version"]
    assert servers.s3.keys("mlflow/")  # the model's files are in the bucket, put there by the server
    a = clone_a.repo
    catalog = pd.read_parquet(a / "data" / "interim" / "catalog.parquet")
    test = catalog[(catalog["split"] == "test") & (catalog["image_status"] == "ok")].head(3)
    raw = yaml.safe_load((a / "params.yaml").read_text())["data"]
    rows = {"name": list(test["name"]), "description": list(test["description"]),
            "image": [os.path.join(raw["raw_dir"], raw["image_dir"], f) for f in test["image"]]}
    env = clone_b.env
    assert not any(k.startswith("AWS_") for k in env) and "MLFLOW_S3_ENDPOINT_URL" not in env
    proc = sh([clone_b.repo / ".venv" / "bin" / "python", "-c", PREDICT.format(model=MODEL), json.dumps(rows)],
              clone_b.repo, env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = pd.read_csv(a / "reports" / "register_test_predictions.csv").set_index("id")
    assert [r["category_1"] for r in out] == list(expected.loc[list(test["id"]), "category_1"])
    assert all(r["modality"] == "text+image" for r in out)
    assert "/api/2.0/mlflow-artifacts/artifacts/" in servers.mlflow.log.read_text()  # served through the server


# ---------------------------------------------------------------- faults: a newcomer whose remote is down, a bad object

@pytest.fixture(scope="module")
def newcomer_started(clone_a, servers, request) -> dict:
    """Clone C, whose remote points at a port nothing listens on, runs `bash scripts/repro.sh ingest` in the
    background from the moment origin holds A's commit (overlapping B's work)."""
    repo = servers.base / "c"
    sh(["git", "clone", "-q", servers.origin, repo], servers.base, client_env(servers.base, servers))
    closed = free_port()
    point_remote(repo, servers, endpoint=f"http://127.0.0.1:{closed}")
    # botocore retries a refused connection with back-off (~30 s more here): one attempt is refused the same way
    env = client_env(repo, servers, FLIPKART_DATA=raw_dir(repo), AWS_MAX_ATTEMPTS="1")
    job = Background(["bash", "scripts/repro.sh", "ingest"], repo, env, servers.base / "c-repro")
    request.addfinalizer(job.stop)
    return {"repo": repo, "port": closed, "job": job}


@pytest.fixture(scope="module")
def newcomer(newcomer_started) -> dict:
    proc, seconds = newcomer_started["job"].result()
    return {**newcomer_started, "proc": proc, "seconds": seconds}


def test_unreachable_remote_one_line_then_computed(newcomer, clone_a, servers):
    proc, repo = newcomer["proc"], newcomer["repo"]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    said = [x for x in out.splitlines() if x.startswith("repro:")]
    assert len(said) == 1 and "could not pull" in said[0] and f"127.0.0.1:{newcomer['port']}" in said[0], said
    assert ran_stages(out) == {"ingest"}, ran_stages(out)
    env = client_env(repo, servers)
    assert json.loads(sh(["dvc", "status", "ingest", "--json"], repo, env).stdout or "{}") == {}
    # no half-written cache: every object is whole (its md5 is its name) and belongs to ingest's outputs
    lock = lock_stages(repo)
    ingest = {o["md5"] for o in lock["ingest"]["outs"]}
    objects = cache_objects(repo)
    assert set(objects) <= ingest and all(md5_of(p) == h for h, p in objects.items()), objects
    assert not [p for p in (repo / ".dvc" / "cache").rglob("*") if p.is_file() and ".tmp" in p.name]
    others = {o["path"] for s, st in lock.items() if s != "ingest" for o in st.get("outs", [])
              if not sh(["git", "ls-files", o["path"]], repo, env).stdout}
    assert not [p for p in others if (repo / p).exists()], others   # nothing half checked out
    print(f"\nC: repro.sh ingest with the remote down: {newcomer['seconds']:.0f} s")


def test_corrupted_object_in_the_bucket_is_refused_and_named(newcomer, servers):
    repo = newcomer["repo"]
    point_remote(repo, servers)
    env = client_env(repo, servers)
    lock = lock_stages(repo)
    out = next(o for o in lock["clean_text"]["outs"] if o["path"].startswith("data/"))
    key = f"dvc/files/md5/{out['md5'][:2]}/{out['md5'][2:]}"
    s3 = servers.s3.client()
    original = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=original[: len(original) // 2] + b"\0" * 16)
    try:
        proc = sh(["dvc", "pull", "clean_text"], repo, env, check=False)
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=original)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert out["path"] in proc.stderr, proc.stderr
    assert not (repo / out["path"]).exists()                 # not checked out
    assert out["md5"] not in cache_objects(repo)             # not kept in the cache either
