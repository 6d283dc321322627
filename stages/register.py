"""Stage register: the fusion model (models/fusion/ + the image backbone's weights) as an MLflow pyfunc,
checked end to end on the raw test products (name, description, photo file), registered as
`register.model_name` with alias `register.alias` (e.g. champion).

metrics/register.json holds what is reproducible (test accuracy of the registered model); the registry
version and run id, which change on every run, go to reports/register.json."""
import _bootstrap  # noqa: F401
import sys
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from fkstudy import io, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.image import weights as W
from fkstudy.predict import registry
from fkstudy.predict.bundle import BundleError, load_bundle
from fkstudy.predict.model import UnservableError, check_servable
from fkstudy.runtime import log, start_stage, timed, write_timings
from fkstudy.train import heads, track

params = start_stage("register")
r, experiment, d = params["register"], params["mlflow"]["experiment"], params["data"]
try:
    bundle = load_bundle("models/fusion")
    check_servable(bundle.config)
except (BundleError, UnservableError) as exc:
    sys.exit(f"register: {exc}")
image_set = bundle.config["image"]["set"]
weights_file = Path(params["pretrained"]["dir"]) / W.spec_for(image_set).local_names[0]
if not weights_file.is_file():
    sys.exit(f"register: {weights_file} not found: the served model ships the {image_set} weights the features "
             "were made with; run `dvc repro pretrained`")
serving = {"max_pixels": d["max_image_pixels"], "n_jobs": params["n_jobs"],
           "batch_size": params["deep_features"][image_set]["batch_size"]}

catalog = load_catalog("data/interim/catalog.parquet")
test = catalog[catalog["split"] == "test"].reset_index(drop=True)
image_dir = Path(d["raw_dir"]) / d["image_dir"]
frame = pd.DataFrame({"name": test["name"], "description": test["description"],
                      "image": [str(image_dir / f) if s == "ok" else "" for f, s in zip(test["image"],
                                                                                       test["image_status"])]})
example = pd.DataFrame({"name": ["Sonata Analog Watch - For Men"], "description": ["Stainless steel strap, 3 ATM"],
                        "image": [""]})
selected, scores = bundle.selected, bundle.config["scores"]
timing: dict = {}
with tracking.run(experiment, "register", f"register-{r['model_name']}", {**r, **serving},
                  tags={"selected": selected["name"], "text_set": bundle.config["text"]["set"], "image_set": image_set}) as run:
    with timed("log pyfunc", timing, "log_seconds"):
        info = registry.log_pyfunc("models/fusion", weights_file, serving, example)
    with timed("end-to-end test predictions", timing, "predict_seconds"), \
            tempfile.TemporaryDirectory(prefix="fkstudy-register-") as tmp:
        out = registry.load_predictor(info.model_uri, tmp).predict(frame)  # the logged files, not the local ones
    pred, y = out["category_1"].to_numpy(), test["category"].to_numpy()
    with_image = (out["modality"] != "text").to_numpy()
    metrics = heads.rounded({
        "model_name": r["model_name"], "alias": r["alias"], "selected": selected["name"],
        "select_by": bundle.config["select_by"], "n_test": int(len(test)), "n_test_text_only": int((~with_image).sum()),
        "test_accuracy": accuracy_score(y, pred),
        "test_macro_f1": f1_score(y, pred, labels=bundle.classes, average="macro", zero_division=0),
        "test_accuracy_with_image": float((pred[with_image] == y[with_image]).mean()) if with_image.any() else None,
        "fusion_stage_test_accuracy": scores.get("test_accuracy"),
        "selection_accuracy": scores.get(f"{bundle.config['select_by']}_accuracy")})
    track.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    reg = registry.register(info.model_uri, r["model_name"], r["alias"], r["promote"],
                            float(metrics["selection_accuracy"]),
                            tags={"selected": selected["name"], "test_accuracy": f"{metrics['test_accuracy']:.4f}",
                                  "source_run": run.info.run_id, "git_commit": tracking.git_commit()})

io.write_json("metrics/register.json", metrics)
io.write_json("reports/register.json", {**reg, "source_run": run.info.run_id, "model_uri": info.model_uri,
                                        "registered_uri": registry.model_uri(r["model_name"], r["alias"])})
io.write_csv("reports/register_test_predictions.csv", pd.concat([test[["id", "category"]], out], axis=1).round(4))
write_timings("register", timing)
log.info("registered %s version %d (%s%s); end-to-end test accuracy %.4f (%d of %d text only); fusion stage %.4f",
         r["model_name"], reg["version"], selected["name"],
         f", alias {r['alias']}" if reg["promoted"] else f", alias {r['alias']} kept on v{reg['alias_version']}",
         metrics["test_accuracy"], metrics["n_test_text_only"], metrics["n_test"], scores.get("test_accuracy") or float("nan"))
