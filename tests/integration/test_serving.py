"""`mlflow models serve` of the model the `register` stage registered on the small real subset: a request
with a good row, an empty row and an unreadable photo is answered HTTP 200 with one prediction per row
and a short per-row error, never a traceback or a server path. Measured before the fix: HTTP 400 for all
three rows, with MLflow's "unexpected error" and the Python stack trace (site-packages paths, the model's
code path) — `normalise_input` raised for the whole frame and the scoring server turns any exception from
`predict` into a 400 with `stack_trace`."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import run

pytestmark = pytest.mark.integration
LEAKS = ("Traceback", "/root", "site-packages", "stack_trace", ".py\"", "File \"")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, payload: dict) -> tuple[int, str]:
    req = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def registered_version(small_repo) -> str:
    """The version the register stage registered (by number: champion or challenger, whichever it got)."""
    run(["dvc", "repro", "register"], small_repo)
    rep = json.loads((small_repo / "reports/register.json").read_text())
    return f"models:/{rep['model_name']}/{rep['version']}"


@pytest.fixture(scope="module")
def server(registered_version, tmp_path_factory):
    """`mlflow models serve` on 127.0.0.1 and a free port, in its own process group, always stopped."""
    here = tmp_path_factory.mktemp("serve")
    port, log = free_port(), here / "serve.log"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(mlflow_cli), "models", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--env-manager", "local", "-m", registered_version],
                                cwd=here, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not answer /ping:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url, here
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)   # the CLI and its uvicorn worker
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def a_test_product(repo: Path) -> tuple[pd.Series, str]:
    catalog = pd.read_parquet(repo / "data/interim/catalog.parquet")
    row = catalog[(catalog["split"] == "test") & (catalog["image_status"] == "ok")].iloc[0]
    raw = yaml.safe_load((repo / "params.yaml").read_text())["data"]
    return row, os.path.join(raw["raw_dir"], raw["image_dir"], row["image"])


def test_a_bad_row_does_not_fail_the_request(small_repo, server):
    url, here = server
    row, image = a_test_product(small_repo)
    junk = here / "junk.jpg"
    junk.write_bytes(b"not a photo")
    status, body = post(url, {"dataframe_records": [
        {"name": row["name"], "description": row["description"], "image": image},
        {"name": "", "description": "", "image": ""},
        {"name": "Analog watch for men", "description": "", "image": str(junk)}]})
    assert status == 200, body
    assert not [s for s in LEAKS if s in body], body
    preds = json.loads(body)["predictions"]   # strict JSON: null, not NaN, for the failed rows
    assert len(preds) == 3
    assert preds[0]["error"] == "" and preds[0]["modality"] == "text+image" and preds[0]["category_1"]
    assert 0 < preds[0]["probability_1"] <= 1
    assert preds[1]["error"] == "name and description are both empty; give at least one of them"
    assert preds[2]["error"] == "not an image: junk.jpg"
    assert all(p["category_1"] == "" and p["probability_1"] is None for p in preds[1:])


def test_text_only_and_description_only_requests(server):
    url, _ = server
    status, body = post(url, {"dataframe_records": [{"description": "Stainless steel analog wrist watch"}]})
    assert status == 200, body
    (pred,) = json.loads(body)["predictions"]
    assert pred["error"] == "" and pred["modality"] == "text" and "text head only" in pred["note"]
    status, body = post(url, {"dataframe_records": [{"name": "Watch", "image": "/srv/photos/gone.jpg"}]})
    assert status == 200 and json.loads(body)["predictions"][0]["error"] == "image not found: gone.jpg", body


def test_a_bad_request_as_a_whole_is_one_short_message(server):
    url, _ = server
    status, body = post(url, {"dataframe_records": [{"image": "a.jpg"}]})
    assert status == 400, body
    doc = json.loads(body)
    assert "name or description required" in doc["message"] and "stack_trace" not in doc
    assert not [s for s in LEAKS if s in body], body
