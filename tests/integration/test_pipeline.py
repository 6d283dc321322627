"""The pipeline end to end on a small real subset, in a temporary copy of the repository."""
import json
import os
import re

import mlflow
import pandas as pd
import pytest

from .conftest import run

from fkstudy.image.registry import IMAGE as IMAGE_REGISTRY
from fkstudy.image.registry import backbones
from fkstudy.pipeline import declared_params, stages
from fkstudy.text.registry import TEXT as TEXT_REGISTRY

pytestmark = pytest.mark.integration
REAL_WEIGHTS = ("vgg16", "efficientnet_lite0", "efficientnet_lite2")   # obtainable offline (the others random-init)
TEXT = TEXT_REGISTRY.names()
DEEP = IMAGE_REGISTRY.names("deep")
IMAGE = IMAGE_REGISTRY.names()


def pipeline_lists(repo) -> dict:
    """params.yaml's `pipeline` section of the repo that ran (the fixture may run fewer backbones)."""
    import yaml

    return yaml.safe_load((repo / "params.yaml").read_text())["pipeline"]


def test_repro_builds_every_output(reproduced):
    repo, _ = reproduced
    catalog = pd.read_parquet(repo / "data/interim/catalog.parquet")
    assert len(catalog) == 73 and catalog["id"].is_unique  # 7 × 10 sampled + the 3 without a photo
    assert set(catalog["split"]) == {"train", "val", "test"}
    problems = pd.read_csv(repo / "reports/ingest_problems.csv")
    assert (problems["kind"] == "image_missing").sum() == 3  # kept for text, listed with their reason
    clustered = pipeline_lists(repo)["cluster"]   # the fixture clusters the real-weights sets only
    for m in (m for m in TEXT if f"text_{m}" in clustered):
        metrics = json.loads((repo / f"metrics/cluster/text_{m}.json").read_text())
        assert metrics["n"] == 73
        assert -1 <= metrics["ari"] <= 1 and metrics["tsne"]["n_seeds"] == 2
    for m in (m for m in IMAGE if f"image_{m}" in clustered):  # every image with a readable photo, not the 3 missing
        metrics = json.loads((repo / f"metrics/cluster/image_{m}.json").read_text())
        assert metrics["n"] == 70, m
    table = pd.read_csv(repo / "reports/summary.csv")
    assert sorted(table["set"]) == sorted(clustered)
    readme = (repo / "README.md").read_text()
    block = readme.split("<!-- results:begin -->")[1].split("<!-- results:end -->")[0]
    assert all(s in block for s in table["set"])


def test_weights_are_real_or_labelled(reproduced):
    """VGG16, Lite0 and Lite2 load real ImageNet weights offline; the others are labelled, never silent."""
    repo, _ = reproduced
    weights = {m: json.loads((repo / f"metrics/image_features/{m}.json").read_text())["weights"]
               for m in IMAGE if m in DEEP}
    assert all(weights[m] == "imagenet" for m in REAL_WEIGHTS)
    for m in ("efficientnetb0", "mobilenetv3small", "clip"):
        assert weights[m] in ("random-init", "imagenet", "openai"), weights
    table = pd.read_csv(repo / "reports/summary.csv").set_index("set")
    for m, w in weights.items():
        if f"image_{m}" in table.index:      # the fixture clusters the real-weights sets only
            assert table.loc[f"image_{m}", "weights"] == w
    if "random-init" in weights.values():
        assert "random-init" in (repo / "reports/study_report.md").read_text()


def test_second_repro_runs_nothing(reproduced):
    repo, _ = reproduced
    out = run(["dvc", "repro"], repo).stdout
    assert "Running stage" not in out, out
    assert re.search(r"up to date", out), out


def test_word2vec_training_is_an_mlflow_run(reproduced):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # the temp store the fixture set
    runs = mlflow.search_runs(experiment_names=["flipkart-product-classification"],
                              filter_string="tags.stage = 'text_features@word2vec'")
    assert len(runs) >= 1
    assert runs.iloc[0]["metrics.vocab_size"] > 0
    assert runs.iloc[0]["params.vector_size"] == "100"


def test_training_runs_are_in_the_tracking_store(reproduced):
    """multiseed: one parent run (with the one logged model) and a nested run per seed (each with a per-epoch
    curve, no model); fusion and every text classifier: one run each."""
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("flipkart-product-classification")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'multiseed@vgg16'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2  # n_seeds in the small params
    n_backbones = len(pipeline_lists(reproduced[0])["multiseed"])
    assert len(client.search_runs([exp.experiment_id], "tags.stage LIKE 'multiseed@%'")) == n_backbones * 3
    child = children[0]
    assert len(client.get_metric_history(child.info.run_id, "val_loss")) > 1
    assert not client.search_logged_models([exp.experiment_id], filter_string=f"source_run_id = '{child.info.run_id}'")
    assert len(client.search_logged_models([exp.experiment_id],
                                           filter_string=f"source_run_id = '{parents[0].info.run_id}'")) == 1
    assert child.data.tags["git_commit"] != "unknown"
    assert len(client.search_runs([exp.experiment_id], "tags.stage = 'fusion'")) == 1
    text_runs = client.search_runs([exp.experiment_id], "tags.stage LIKE 'text_classifier@%'")
    assert len(text_runs) == len(TEXT)


def test_the_fine_tuned_text_encoder_is_logged_and_its_saved_folder_predicts_what_the_stage_scored(reproduced):
    """fine_tune_text@<m>: one MLflow run with its per-epoch curve; the metrics compare fine-tuned and frozen per
    view; models/train/text_<m>_finetuned loads back (transformers folder + head) and gives the test predictions
    the stage wrote, product by product."""
    import torch
    import yaml
    from safetensors.torch import load_file

    from fkstudy.labels import rollup
    from fkstudy.text import encoders, fine_tune

    repo = reproduced[0]
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("flipkart-product-classification")
    for name in pipeline_lists(repo)["fine_tune_text"]:
        (r,) = client.search_runs([exp.experiment_id], f"tags.stage = 'fine_tune_text@{name}'")
        m = json.loads((repo / f"metrics/fine_tune_text/{name}.json").read_text())
        assert len([h for h in client.get_metric_history(r.info.run_id, "val_loss") if h.step >= 1]) == m["epochs"]
        assert set(m["test"]) == set(m["views"]) == {"both", "name"}
        for t in m["test"].values():
            assert 0 <= t["fine_tuned"]["accuracy"] <= 1 and 0 <= t["frozen"]["accuracy"] <= 1
        folder = repo / f"models/train/text_{name}_finetuned"
        classes = json.loads((folder / "classes.json").read_text())
        tokenizer, encoder = encoders.load_transformer(folder / "encoder")
        head = torch.nn.Linear(encoder.config.hidden_size, len(classes))
        head.load_state_dict(load_file(folder / "head.safetensors"))
        max_length = yaml.safe_load((repo / "params.yaml").read_text())["fine_tune_text"]["max_length"]
        preds = pd.read_csv(repo / f"plots/fine_tune_text/{name}/test_predictions.csv")
        text = pd.read_parquet(repo / "data/interim/text.parquet").set_index("id")
        docs = [text.loc[i, f"raw_{v}"] for i, v in zip(preds["id"], preds["view"])]
        proba, tops = rollup(fine_tune.class_proba(tokenizer, encoder, head, docs, 32, max_length), classes)
        assert list(tops[proba.argmax(1)]) == preds["fine_tuned"].tolist()


def test_every_transfer_learning_run_is_logged_with_its_model(reproduced):
    """train@<backbone>-<variant>: one run each, tagged with backbone/variant/weights, a per-epoch
    curve, test metrics and a logged Keras model with a signature."""
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("flipkart-product-classification")
    runs = client.search_runs([exp.experiment_id], "tags.stage LIKE 'train@%'")
    seen = {(r.data.tags["backbone"], r.data.tags["variant"]) for r in runs}
    lists = pipeline_lists(reproduced[0])
    assert set(lists["backbones"]) <= set(backbones())
    assert seen == {(b, v) for b in lists["backbones"] for v in lists["variants"]}
    tuned = client.search_runs([exp.experiment_id], "tags.stage LIKE 'fine_tune@%'")   # augmentation + block5
    assert {(r.data.tags["backbone"], r.data.tags["variant"]) for r in tuned} == {(b, "finetuned")
                                                                                 for b in lists["fine_tune"]}
    for b in lists["fine_tune"]:
        m = json.loads((reproduced[0] / f"metrics/train/{b}_finetuned.json").read_text())
        assert m["unfreeze_layers"] == 3 and m["unfrozen_layers"] == 3 and m["framework"] == "keras", m
    for r in runs + tuned:
        b = r.data.tags["backbone"]
        assert r.data.tags["weights"] == ("imagenet" if b in REAL_WEIGHTS else "random-init")
        assert r.data.tags["git_commit"] != "unknown" and "dvc_exp_name" in r.data.tags
        assert 0.0 <= r.data.metrics["test_accuracy"] <= 1.0 and "macro_f1" in r.data.metrics
        curve = [m for m in client.get_metric_history(r.info.run_id, "val_accuracy") if m.step >= 1]  # step = epoch
        assert len(curve) == r.data.metrics["epochs_run"]
        models = client.search_logged_models([exp.experiment_id], filter_string=f"source_run_id = '{r.info.run_id}'")
        assert len(models) == 1
        info = mlflow.models.get_model_info(f"models:/{models[0].model_id}")
        assert info.signature is not None and info.signature.inputs.to_dict()[0]["type"] == "tensor"


def test_every_stage_read_only_declared_params(reproduced):
    """Params read = params declared: the repro ran with FKSTUDY_PARAMS_AUDIT (conftest), every stage
    started through fkstudy.runtime.start_stage (which stops a stage on an undeclared read), and every key
    a stage read is one its dvc.yaml entry lists."""
    repo, _ = reproduced
    reads: dict[str, set] = {}
    for line in (repo.parent / "params_audit.jsonl").read_text().splitlines():
        rec = json.loads(line)
        reads.setdefault(rec["stage"], set()).add(rec["key"])
    every = set(stages(repo))
    assert set(reads) == every - {"report", "report_screenshot"}  # the two stages that declare no params
    for stage, keys in reads.items():
        declared = declared_params(stage, repo)
        undeclared = [k for k in keys if not any(k == d or k.startswith(d + ".") for d in declared)]
        assert not undeclared, f"{stage} read {undeclared}, declared {declared}"
