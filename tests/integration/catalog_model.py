"""A real model for the catalogue-scoring test (run as a script in the test's repository copy, its own process):
fusion heads fitted (fkstudy.train.fusion) on the catalogue's text and image feature files, labels from the real
catalogue, saved as the study's bundle, logged as its MLflow pyfunc and registered as `<name>@champion` in the
store of $MLFLOW_TRACKING_URI. The selected candidate is set to the geometric pooling of both heads, so scoring
uses the photos (and a product whose photo is missing gets its per-row error).

    python tests/integration/catalog_model.py <repo> <registered model name>
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch  # noqa: F401  (torch before anything that could load TensorFlow)


def main(repo: Path, name: str) -> None:
    sys.path[:0] = [str(repo / "src"), str(repo)]
    import mlflow
    import numpy as np
    import pandas as pd

    from bench._repo import CSV, real_data_dir
    from fkstudy import paths
    from fkstudy.image.registry import weight_spec
    from fkstudy.image.weights import locate
    from fkstudy.predict import registry
    from fkstudy.predict.bundle import save_bundle
    from fkstudy.predict.promotion import RunContext
    from fkstudy.train import fusion
    from fkstudy.train.fusion_report import bundle_image
    from fkstudy.train.heads import HeadParams

    text, image = (np.load(repo / paths.catalog_features(m, s), allow_pickle=False)
                   for m, s in (("text", "bert"), ("image", "efficientnet_lite0")))
    tm, im = json.loads(str(text["meta"])), json.loads(str(image["meta"]))
    real = pd.read_csv(real_data_dir() / CSV, dtype=str, keep_default_na=False)
    label = dict(zip(real["uniq_id"], real["product_category_tree"].str.extract(r'^\["([^>"]+)')[0].str.strip()))
    ids = sorted(set(text["ids"].tolist()))
    split = np.random.default_rng(0).choice(["train", "val", "test"], size=len(ids), p=[0.6, 0.2, 0.2])
    catalog = pd.DataFrame({"id": ids, "category": [label[i.split("-r")[0]] for i in ids], "split": split})
    head = HeadParams(type="logreg", scale="standard", C=[1.0], hidden=[16], alpha=1e-3, lr=1e-2, batch_size=32,
                      max_iter=500, patience=5)
    fit = fusion.fit_fusion(text["X"], text["ids"], image["X"], image["ids"], catalog, head, 0,
                            modes=["geometric_proba"], weights=[0.5], n_splits=2, n_repeats=1)
    i_meta = {**im["params"], "image_cache": im["image_cache"], "input_size": im["input_size"],
              "sha256": im["weights"]["sha256"], "framework": "torch"}
    config = {"classes": fit.classes, "select_by": "cv", "name": None, "calibration": None,
              "selected": {"name": "geometric_proba@0.5", "mode": "geometric_proba", "text_weight": 0.5},
              "scores": {"cv_accuracy": None, "val_accuracy": None, "test_accuracy": None},
              "text": {"set": "bert", "method": "bert", "params": tm["params"], "dim": int(text["X"].shape[1])},
              "image": bundle_image("efficientnet_lite0", i_meta, int(image["X"].shape[1]))}
    bundle = repo / "models" / "catalog_test_bundle"
    save_bundle(bundle, fit.models, config)
    weights_file = locate(weight_spec("efficientnet_lite0"), repo / "weights")[0]
    store = Path(mlflow.get_tracking_uri().removeprefix("sqlite:///")).parent
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("catalog-test", (store / "artifacts").as_uri()))
    example = pd.DataFrame({"name": ["Analog watch"], "description": [""], "image": [""]})
    with mlflow.start_run():
        info = registry.log_pyfunc(bundle, weights_file, {"max_pixels": 40_000_000, "n_jobs": 1, "batch_size": 8},
                                   example)
    reg = registry.register(info.model_uri, name, "champion", "always", 0.9, tags={}, context=RunContext(branch="main"))
    assert reg["promoted"], reg


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2])
