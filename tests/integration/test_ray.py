"""The catalogue-scale path on a real Ray cluster of two nodes on this machine (docs/scaling.md "Scaling to the catalogue").

Setup: a head node and a second node started with `ray start` (bench/_cluster.py: free ports, one temp dir,
token auth, stopped by pid in a finalizer), a temp git+DVC copy of the repository whose params point the
catalogue jobs at a replicated real catalogue (3 copies of a per-class sample of the real products, the products
whose photo is missing included) and at the cluster (scale.engine: ray). Then, through DVC stages:

- catalog_text@bert and catalog_image@efficientnet_lite0 on Ray, then in one process (scale.engine: local): the
  feature files are byte-identical (and DVC records the same hash), rows in id order, the missing photos listed;
- a model fitted on those features is logged and registered (real MLflow, SQLite store) as champion;
- score_catalog@champion in one process, and `python -m fkstudy predict --input` on the same file: identical
  bytes (same columns, per-row errors);
- score_catalog@champion on Ray with one of the two workers SIGKILLed mid-chunk (the Ray actor process on the
  second node, frozen as it starts a chunk, killed once the other worker has had time for the rest): Ray retries
  the chunk, the stage succeeds, every product is scored exactly once, and the file is byte-identical to the one-process run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from bench._cluster import LocalCluster
from bench._repo import products_csv, write_weights_records

from .conftest import copy_repo, git_commit_all, real_data_dir, run, set_params

pytestmark = pytest.mark.integration

MODEL = "flipkart-product-classifier"
TEXT, IMAGE = "bert", "efficientnet_lite0"
FEATURES = [f"catalog_text@{TEXT}", f"catalog_image@{IMAGE}"]
CHUNK = 8


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each (one worker each), coming up while the one-process runs go (`ready()` waits)."""
    c = LocalCluster(nodes=2, cpus_per_node=1).start_in_background()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory, cluster) -> dict:
    base = tmp_path_factory.mktemp("ray")
    src = real_data_dir()
    catalog = products_csv(base / "catalog" / "products.csv", copies=3, src=src, per_class=2)
    repo = copy_repo(base / "repo")
    set_params(repo, {"data.raw_dir": str(src), "n_jobs": 1,
                      "pipeline.catalog_text": [TEXT], "pipeline.catalog_image": [IMAGE],
                      "pipeline.score_catalog": ["champion"],
                      # small and cheap: texts cut at 32 tokens, photos at 128 px (the CI's Ray part stays ~3 min)
                      f"text_features.{TEXT}.batch_size": 8, f"text_features.{TEXT}.max_length": 32,
                      f"deep_features.{IMAGE}.batch_size": 8, f"deep_features.{IMAGE}.input_size": 128,
                      "prep_images.size": 128,
                      "scale.catalog": str(catalog), "scale.engine": "ray", "scale.ray_address": cluster.address,
                      "scale.workers": 2, "scale.chunk_rows": CHUNK, "scale.batch_size": 8})
    # the records the `pretrained` stage would write for these two (it also converts VGG16: ~45 s for nothing here)
    write_weights_records(repo, [("text", TEXT), ("image", IMAGE)])
    git_commit_all(repo)
    env = {**cluster.env, "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}", "FLIPKART_DATA": str(src)}
    return {"repo": repo, "catalog": catalog, "base": base, "env": env}


def repro(r: dict, *stages: str, engine: str) -> subprocess.CompletedProcess:
    set_params(r["repo"], {"scale.engine": engine})
    return run(["dvc", "repro", "--single-item", *stages], r["repo"], env=r["env"])


def lock_md5(repo: Path, stage: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]
    return lock["outs"][0]["md5"]


@pytest.fixture(scope="module")
def features(repo, cluster) -> dict:
    """Both representation jobs in one process, then on Ray: their files after each engine (the files after the
    Ray run stay: the model is fitted on them)."""
    r, out = repo["repo"], {stage: {} for stage in FEATURES}
    for engine in ("local", "ray"):
        if engine == "ray":
            cluster.ready()
        t0 = time.perf_counter()
        repro(repo, *FEATURES, engine=engine)
        print(f"features, engine {engine}: {time.perf_counter() - t0:.1f} s")
        for stage in FEATURES:
            out[stage][engine] = (_out_file(r, stage).read_bytes(), lock_md5(r, stage))
    return out


def _out_file(repo: Path, stage: str) -> Path:
    group, method = stage.split("@")
    return repo / "data/catalog/features" / f"{group.split('_')[1]}_{method}.npz"


def test_features_on_ray_are_byte_identical_to_one_process(repo, features):
    r = repo["repo"]
    catalog = pd.read_csv(repo["catalog"], dtype=str, keep_default_na=False)
    missing = catalog.loc[~catalog["image"].map(os.path.exists), "id"]
    assert len(missing) == 9  # the 3 real products without a photo, in each of the 3 copies
    devs = {}
    for stage in FEATURES:
        ray_bytes, ray_md5 = features[stage]["ray"]
        local_bytes, local_md5 = features[stage]["local"]
        assert ray_bytes == local_bytes, f"{stage}: Ray and one-process feature files differ"
        assert ray_md5 == local_md5
        with np.load(_out_file(r, stage), allow_pickle=False) as z:
            ids, X, meta = z["ids"], z["X"], json.loads(str(z["meta"]))
        assert list(ids) == sorted(ids) and X.dtype == np.float32 and np.isfinite(X).all()
        assert meta["catalog"] == {"rows": len(catalog), "chunk_rows": CHUNK}
        expected = set(catalog["id"]) - (set(missing) if stage.startswith("catalog_image") else set())
        assert set(ids) == expected
        # each copy of a product got the same features as the original (same text / photo, any chunk)
        row = {i: k for k, i in enumerate(ids)}
        base = [i for i in ids if not i.endswith(("-r1", "-r2"))]
        devs[stage] = max(float(np.abs(X[row[i]] - X[row[f"{i}-r{c}"]]).max()) for i in base for c in (1, 2))
        assert devs[stage] < 1e-4, f"{stage}: copies of a product differ by {devs[stage]}"
    print(f"largest difference between the copies of a product (other chunk, other batch): {devs}")
    failures = pd.read_csv(r / f"reports/catalog_image/{IMAGE}_failures.csv", dtype=str)
    assert sorted(failures["id"]) == sorted(missing) and failures["reason"].str.startswith("image not found").all()
    metrics = json.loads((r / f"metrics/catalog_image/{IMAGE}.json").read_text())
    assert metrics == {"rows": len(catalog), "encoded": len(catalog) - 9, "failed": 9, "dim": 1280,
                       "chunks": -(-len(catalog) // CHUNK)}


# ------------------------------------------------------------------------------------------------ scoring
@pytest.fixture(scope="module")
def champion(repo, features) -> str:
    """A real model: fusion heads fitted on the catalogue features just made (labels from the real catalogue),
    logged as the study's pyfunc and registered as models:/<MODEL>@champion in the test's SQLite store."""
    run([sys.executable, str(Path(__file__).with_name("catalog_model.py")), str(repo["repo"]), MODEL], repo["repo"],
        env=repo["env"])
    return f"models:/{MODEL}@champion"


@pytest.fixture(scope="module")
def scored_locally(repo, champion) -> bytes:
    repro(repo, "score_catalog@champion", engine="local")
    return (repo["repo"] / "data/catalog/predictions_champion.csv").read_bytes()


def test_scoring_in_one_process_is_predict_input(repo, champion, scored_locally):
    from fkstudy import numerics

    out = repo["base"] / "cli.csv"
    env = {**repo["env"], **numerics.pinned_env(), "PYTHONPATH": str(repo["repo"] / "src")}
    proc = run([sys.executable, "-m", "fkstudy", "predict", "--input", str(repo["catalog"]), "--output", str(out),
                "--batch-size", "8", "--quiet", "--model-uri", champion], repo["repo"], env=env, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]   # written, some rows failed (the missing photos)
    assert out.read_bytes() == scored_locally
    pred = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert (pred["error"].str.startswith("image not found")).sum() == 9 and (pred["error"] == "").sum() == len(pred) - 9
    m = json.loads((repo["repo"] / "metrics/score_catalog/champion.json").read_text())
    assert m["rows"] == len(pred) and m["failed"] == 9 and m["model"] == f"models:/{MODEL}/1"


def test_scoring_on_ray_survives_a_killed_worker(repo, cluster, scored_locally):
    """SIGKILL the second node's Ray worker in the middle of a chunk: the moment its process title says `.submit`
    (a chunk started) it is frozen (SIGSTOP: chunks take tens of ms, so a plain kill would be a race), the other
    worker goes on for a while (the driver, keeping chunk order, cannot finish: the frozen chunk is missing), then
    the frozen process is SIGKILLed. Ray retries the chunk (on the other worker or on the actor it restarts: Ray's
    choice); the output has every product once, byte-identical to the one-process run."""
    r = repo["repo"]
    set_params(r, {"scale.engine": "ray"})
    proc = subprocess.Popen(["dvc", "repro", "--single-item", "score_catalog@champion"], cwd=r,
                            env={**os.environ, **repo["env"]}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    state = {"done": 0, "n": None, "killed": None, "after": set()}
    stop = threading.Event()

    def busy(p) -> bool:
        try:
            return ".submit" in " ".join(p.cmdline())
        except psutil.Error:
            return False

    def watch():   # freeze a busy worker of node 1, kill it, then note the node's worker processes (the restart)
        frozen = None
        while not stop.is_set():
            if frozen is None:
                hit = [p for p in cluster.worker_processes(1) if busy(p)]
                if hit:
                    hit[0].suspend()
                    if busy(hit[0]):   # still in its chunk once stopped
                        frozen, at = hit[0], time.monotonic()
                    else:
                        hit[0].resume()
                else:
                    time.sleep(0.001)
            elif state["killed"] is None:
                if time.monotonic() - at >= 3.0:   # the other worker has had its chunks by now
                    state["killed"] = (frozen.pid, state["done"])
                    frozen.kill()
                stop.wait(0.05)
            else:
                state["after"].update(p.pid for p in cluster.worker_processes(1))
                stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    log = []
    for line in proc.stdout:
        log.append(line)
        if "chunks" in line and " done " in line:
            state["done"], state["n"] = (int(x) for x in line.split("chunks", 1)[1].split("done")[0].split("/"))
    rc = proc.wait(timeout=600)
    stop.set()
    watcher.join()
    text, n = "".join(log), state["n"]
    assert rc == 0, text[-4000:]
    assert state["killed"] is not None, f"the second node's worker was never caught in a chunk:\n{text[-3000:]}"
    assert f"chunks {n} / {n} done" in text
    pid, done = state["killed"]
    print(f"killed worker {pid} on the second node after {done} of {n} chunks; its node's workers afterwards: "
          f"{sorted(state['after'])}")
    assert done < n, "the frozen worker's chunk came back before it was killed"
    out = (r / "data/catalog/predictions_champion.csv").read_bytes()
    pred = pd.read_csv(r / "data/catalog/predictions_champion.csv", dtype=str, keep_default_na=False)
    catalog = pd.read_csv(repo["catalog"], dtype=str, keep_default_na=False)
    assert pred["id"].tolist() == catalog["id"].tolist() and pred["line"].is_unique   # each product once, in order
    assert out == scored_locally, f"worker {pid} killed after {done} chunks: output differs from one process"
