"""`dvc repro register` on the small real subset: the fusion model is registered with alias `champion`
in the session's tracking store, predicts the raw test products like the fusion stage scored them, and
`python -m fkstudy predict` / mlflow.pyfunc.load_model serve it from the registry."""
from __future__ import annotations

import json
import os
import sys

import mlflow
import pandas as pd
import pytest
import yaml

from .conftest import run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registered(small_repo):
    """Only what `register` needs (ingest, bert, images, Lite0, fusion) — cheaper than the whole pipeline.
    The alias moves only on register.production_branch (main): on another branch (`git init` may name it
    master) the version is a challenger, and the explicit `promote` command makes it the champion."""
    run(["dvc", "repro", "register"], small_repo)
    rep = json.loads((small_repo / "reports/register.json").read_text())
    branch = run(["git", "symbolic-ref", "-q", "--short", "HEAD"], small_repo, check=False).stdout.strip()
    production = yaml.safe_load((small_repo / "params.yaml").read_text())["register"]["production_branch"]
    if branch == production:
        assert rep["promoted"] and rep["aliases_set"] == [rep["alias"]], rep
    else:
        assert not rep["promoted"] and f"is not register.production_branch {production!r}" in rep["reason"], rep
        assert rep["aliases_set"] == ["challenger"] and rep["git_branch"] == branch
        proc = _cli(small_repo, "--version", str(rep["version"]), "--yes", command="promote")
        assert proc.returncode == 0 and f"-> v{rep['version']}" in proc.stdout, proc.stderr
    return small_repo


def _cli(repo, *args, command="predict"):
    env = {"PYTHONPATH": str(repo / "src"), "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    return run([sys.executable, "-m", "fkstudy", command, *args], repo, env=env, check=False)


def test_register_records_a_reproducible_metric_and_the_registry_version(registered):
    m = json.loads((registered / "metrics/register.json").read_text())
    catalog = pd.read_parquet(registered / "data/interim/catalog.parquet")
    assert m["n_test"] == int((catalog["split"] == "test").sum()) and 0 <= m["test_accuracy"] <= 1
    assert m["model_name"] == "flipkart-product-classifier" and m["alias"] == "champion"
    # the served path (raw text + photo files) reproduces the fusion stage's test score on the same products
    n_img = m["n_test"] - m["n_test_text_only"]
    assert abs(m["test_accuracy_with_image"] - m["fusion_stage_test_accuracy"]) <= 1 / n_img + 1e-9
    assert "version" not in m  # registry versions change on every run: reports/register.json has them
    rep = json.loads((registered / "reports/register.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    v = client.get_model_version_by_alias(m["model_name"], m["alias"])
    assert int(v.version) == rep["version"] and v.tags["selected"] == m["selected"]
    assert client.get_run(rep["source_run"]).data.tags["stage"] == "register"


def test_cli_predicts_from_the_registry(registered):
    catalog = pd.read_parquet(registered / "data/interim/catalog.parquet")
    row = catalog[(catalog["split"] == "test") & (catalog["image_status"] == "ok")].iloc[0]
    raw = yaml.safe_load((registered / "params.yaml").read_text())["data"]
    image = os.path.join(raw["raw_dir"], raw["image_dir"], row["image"])
    proc = _cli(registered, "--name", row["name"], "--description", row["description"], "--image", image, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["modality"] == "text+image" and len(doc["top"]) == 3
    proc = _cli(registered, "--name", row["name"], "--image", "no/such.jpg")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["error: image no/such.jpg: file not found"]


def test_batch_cli_predicts_a_csv_of_real_products(registered, tmp_path):
    """Real test products (photos by absolute path, one text-only) plus two bad rows: exit 3, every row in
    the output with its CSV line, the good rows equal to the register stage's own end-to-end predictions."""
    catalog = pd.read_parquet(registered / "data/interim/catalog.parquet")
    test = catalog[(catalog["split"] == "test") & (catalog["image_status"] == "ok")].head(4)
    raw = yaml.safe_load((registered / "params.yaml").read_text())["data"]
    one_line = test["description"].str.replace(r"\s+", " ", regex=True)  # one CSV line per product here
    rows = pd.DataFrame({"id": test["id"], "name": test["name"], "description": one_line,
                         "image": [os.path.join(raw["raw_dir"], raw["image_dir"], f) for f in test["image"]]})
    rows = pd.concat([rows, pd.DataFrame({"id": ["empty", "nophoto"], "name": ["", "Analog watch"],
                                          "description": ["", ""], "image": ["", "no/such.jpg"]})])
    src, dst = tmp_path / "products.csv", tmp_path / "predictions.csv"
    rows.to_csv(src, index=False)
    proc = _cli(registered, "--input", str(src), "--output", str(dst))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines()[:2] == [
        "line 6: name and description are both empty; give at least one of them", "line 7: image not found: such.jpg"]
    out = pd.read_csv(dst, dtype={"id": str}, keep_default_na=False)
    assert len(out) == 6 and list(out["error"] != "") == [False] * 4 + [True] * 2
    assert list(out["modality"][:4]) == ["text+image"] * 4
    expected = pd.read_csv(registered / "reports/register_test_predictions.csv").set_index("id")
    assert list(out["category_1"][:4]) == list(expected.loc[list(test["id"]), "category_1"])


def test_pyfunc_from_the_registry(registered):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model("models:/flipkart-product-classifier@champion")
    out = model.predict(pd.DataFrame({"name": ["Analog wrist watch for men", "Analog wrist watch for men"],
                                      "description": ["", "Stainless steel strap"], "image": ["", ""]}))
    assert list(out["modality"]) == ["name", "text"] and out["category_1"].all()   # a title alone: the name head
    assert "name head" in out.loc[0, "note"] and "text head only" in out.loc[1, "note"]
