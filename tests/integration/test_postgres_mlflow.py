"""A training stage against a real PostgreSQL-backed MLflow store (docs/team.md).

The test setup starts a throwaway PostgreSQL cluster (Debian's binaries, initdb + pg_ctl) in a temp
dir, listening on 127.0.0.1 at a free port with password auth, creates a database, points
MLFLOW_TRACKING_URI at it and runs ingest -> clean_text -> text_features@tfidf -> text_classifier@tfidf
on a small real subset in a temp copy of the repo. The run, its params, metrics, tags and logged model
are then read back through MLflow and, to prove they are in PostgreSQL, straight from its tables.
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import copy_repo, make_subset, run, set_params

pytestmark = pytest.mark.integration

EXPERIMENT = "flipkart-product-classification"


def postgres_bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with initdb, else initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parts[-3])])
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb and Path(initdb).with_name("pg_ctl").exists():
        return Path(initdb).resolve().parent
    msg = "PostgreSQL server binaries (initdb, pg_ctl) not found: scripts/setup.sh installs Debian's postgresql"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One throwaway cluster. initdb refuses to run as root: as root the server runs as `postgres`."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.user, self.password, self.port = "mlflow", secrets.token_hex(12), free_port()
        self.base = Path(tempfile.mkdtemp(prefix="fkstudy-pg-"))
        self.data, self.log = self.base / "data", self.base / "server.log"
        self.run_as = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root and there is no `postgres` user to run the server "
                            "(Debian's postgresql package creates it: scripts/setup.sh)")
            self.run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            os.chown(self.base, pw.pw_uid, pw.pw_gid)

    def _cmd(self, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True,
                              timeout=timeout, cwd=self.base, **self.run_as)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}")
        return proc

    def start(self) -> "Postgres":
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            os.chown(pwfile, self.run_as["user"], self.run_as["group"])
        self._cmd("initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        pwfile.unlink()
        # TCP on 127.0.0.1 only; the unix socket stays inside the temp dir
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.base} "
                  "-c fsync=off", "start")
        return self

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def connect(self, dbname: str, autocommit: bool = False):
        import psycopg  # psycopg 3: what SQLAlchemy 2.1 (so MLflow) uses for postgresql:// URIs

        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               dbname=dbname, connect_timeout=10, autocommit=autocommit)

    def create_database(self, name: str) -> str:
        with self.connect("postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="module")
def postgres():
    server = Postgres(postgres_bindir())
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def trained(postgres, tmp_path_factory):
    """text_classifier@tfidf run on a 10-per-class real subset with MLFLOW_TRACKING_URI=postgresql://..."""
    base = tmp_path_factory.mktemp("pg_study")
    data = make_subset(base / "data_subset", per_class=10)
    repo = copy_repo(base / "repo")
    set_params(repo, {"data.raw_dir": str(data), "data.min_per_class": 5, "text_classifier.n_repeats": 1})
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        run(cmd, repo)
    env = {"MLFLOW_TRACKING_URI": postgres.create_database("mlflow_study")}
    for stage in (["ingest.py"], ["clean_text.py"], ["text_features.py", "tfidf"],
                  ["text_classifier.py", "tfidf"]):
        run([sys.executable, f"stages/{stage[0]}", *stage[1:]], repo, env)
    return repo, env["MLFLOW_TRACKING_URI"]


def test_training_run_is_in_the_postgres_store(trained):
    import mlflow

    repo, uri = trained
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'text_classifier@tfidf'")
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED"
    assert r.data.params["features"] == "data/features/text_tfidf.npz" and r.data.params["head.type"] == "logreg"
    assert 0.0 <= r.data.metrics["macro_f1"] <= 1.0 and "cv_macro_f1" in r.data.metrics
    assert r.data.tags["git_commit"] != "unknown" and r.data.tags["features"] == "tfidf"
    models = client.search_logged_models([exp.experiment_id], filter_string=f"source_run_id = '{r.info.run_id}'")
    assert len(models) == 1
    files = {Path(a.path).name for a in client.list_logged_model_artifacts(models[0].model_id)}
    assert {"MLmodel", "model.skops"} <= files, files


def test_rows_are_in_postgresql_tables(postgres, trained):
    """Read back with SQL: the store is PostgreSQL itself, not a SQLite or file fallback."""
    repo, _ = trained
    assert not (repo / "mlflow.db").exists()
    with postgres.connect("mlflow_study") as conn, conn.cursor() as cur:
        cur.execute("SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
                    "JOIN tags t ON t.run_uuid = r.run_uuid WHERE e.name = %s AND t.key = 'stage' "
                    "AND t.value = 'text_classifier@tfidf'", (EXPERIMENT,))
        (run_id,), = cur.fetchall()
        cur.execute("SELECT count(*) FROM params WHERE run_uuid = %s", (run_id,))
        assert cur.fetchone()[0] >= 10
        cur.execute("SELECT value FROM metrics WHERE run_uuid = %s AND key = 'test_accuracy'", (run_id,))
        assert 0.0 <= cur.fetchone()[0] <= 1.0
        cur.execute("SELECT count(*) FROM logged_models WHERE source_run_id = %s", (run_id,))
        assert cur.fetchone()[0] == 1
