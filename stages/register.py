"""Stage register: the fusion model (models/fusion/ + the image backbone's weights) as an MLflow pyfunc,
checked end to end on the raw test products (name, description, photo file), registered as
`register.model_name`. The production alias `register.alias` (champion) moves to the new version only
outside DVC experiments, on `register.production_branch`, and when `register.promote` says so
(fkstudy.predict.promotion); otherwise the version gets `register.challenger_alias` and
reports/register.json says why (`reason`).

metrics/register.json holds what is reproducible (test accuracy of the registered model); the registry
version and run id, which change on every run, go to reports/register.json (git-ignored, not a DVC output:
the MLflow registry is the record)."""
import _bootstrap  # noqa: F401
import tempfile
from pathlib import Path

import pandas as pd

from fkstudy import files, paths, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.errors import StudyError
from fkstudy.evaluate.metrics import label_scores, rounded
from fkstudy.image.registry import weight_spec
from fkstudy.predict import registry
from fkstudy.predict.bundle import load_bundle
from fkstudy.predict.model import check_servable, raw_inputs
from fkstudy.predict.promotion import RunContext
from fkstudy.runtime import log, run_stage, start_stage


def _accuracy_where(y, out: pd.DataFrame, mask) -> float | None:
    return float((out["category_1"].to_numpy()[mask] == y[mask]).mean()) if mask.any() else None


def main() -> None:
    stage = start_stage("register")
    params = stage.params
    r, d = params.register, params.data
    bundle = load_bundle(paths.FUSION_MODEL)
    check_servable(bundle.config)
    image_set = bundle.config["image"]["set"]
    weights_file = Path(params.pretrained.dir) / weight_spec(image_set).local_names[0]
    if not weights_file.is_file():
        raise StudyError(f"register: {weights_file} not found: the served model ships the {image_set} weights the "
                         "features were made with; run `dvc repro pretrained`")
    serving = {"max_pixels": d.max_image_pixels, "n_jobs": params.n_jobs,
               "batch_size": getattr(params.deep_features, image_set).batch_size}

    catalog = load_catalog(paths.CATALOG)
    test = catalog[catalog["split"] == "test"].reset_index(drop=True)
    frame = raw_inputs(test, Path(d.raw_dir) / d.image_dir)
    example = pd.DataFrame({"name": ["Sonata Analog Watch - For Men"],
                            "description": ["Stainless steel strap, 3 ATM"], "image": [""]})
    selected, scores = bundle.selected, bundle.config["scores"]
    with tracking.run(params.mlflow.experiment, "register", f"register-{r.model_name}", {**r.model_dump(), **serving},
                      tags={"selected": selected["name"], "text_set": bundle.config["text"]["set"],
                            "image_set": image_set}) as run:
        with stage.timed("log pyfunc", "log_seconds"):
            info = registry.log_pyfunc(paths.FUSION_MODEL, weights_file, serving, example)
        with stage.timed("end-to-end test predictions", "predict_seconds"), \
                tempfile.TemporaryDirectory(prefix="fkstudy-register-") as tmp:
            predictor = registry.load_predictor(info.model_uri, tmp)  # the logged files, not the local ones
            out = predictor.predict(frame)
            # what a seller typing only a title gets: description blanked, no photo
            name_only = predictor.predict(frame.assign(description="", image=""))
        failed = out.index[out["error"] != ""]
        if len(failed):
            first = failed[0]
            raise StudyError(f"register: {len(failed)} of {len(out)} test products could not be predicted end to "
                             f"end, e.g. id {test.at[first, 'id']}: {out.at[first, 'error']}")
        pred, y = out["category_1"].to_numpy(), test["category"].to_numpy()
        with_image = out["modality"].isin(("text+image", "image")).to_numpy()
        s = label_scores(y, pred, bundle.classes, per_class=False)
        ok_name = (name_only["error"] == "").to_numpy()   # a product whose name is empty cannot be predicted
        s_name = label_scores(y[ok_name], name_only["category_1"].to_numpy()[ok_name], bundle.classes, per_class=False)
        confident = out["confident"].to_numpy(bool)
        metrics = rounded({
            "model_name": r.model_name, "alias": r.alias, "selected": selected["name"],
            "select_by": bundle.config["select_by"], "n_test": int(len(test)),
            "n_test_text_only": int((~with_image).sum()), "test_accuracy": s["accuracy"], "test_macro_f1": s["macro_f1"],
            "test_accuracy_with_image": float((pred[with_image] == y[with_image]).mean()) if with_image.any() else None,
            "name_only_test_accuracy": s_name["accuracy"], "name_only_test_macro_f1": s_name["macro_f1"],
            "name_only_failed": int((~ok_name).sum()),
            "confident_share": float(confident.mean()),
            "confident_accuracy": float((pred[confident] == y[confident]).mean()) if confident.any() else None,
            "name_only_answered_by": "+".join(sorted(set(name_only.loc[ok_name, "modality"]))),  # "name": the name head
            "name_only_confident_share": float(name_only.loc[ok_name, "confident"].mean()),
            "name_only_confident_accuracy": _accuracy_where(y, name_only, ok_name & name_only["confident"].to_numpy(bool)),
            "fusion_stage_test_accuracy": scores.get("test_accuracy"),
            "selection_accuracy": scores.get(f"{bundle.config['select_by']}_accuracy")})
        tracking.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        reg = registry.register(info.model_uri, r.model_name, r.alias, r.promote, float(metrics["selection_accuracy"]),
                                tags={"selected": selected["name"], "test_accuracy": f"{metrics['test_accuracy']:.4f}",
                                      "source_run": run.info.run_id, "git_commit": tracking.git_commit()},
                                challenger_alias=r.challenger_alias, production_branch=r.production_branch,
                                context=RunContext.from_environment())

    files.write_json(paths.metrics("register"), metrics)
    files.write_json("reports/register.json", {**reg, "source_run": run.info.run_id, "model_uri": info.model_uri,
                                                "registered_uri": registry.model_uri(r.model_name, reg["aliases_set"][0]),
                                                "version_uri": f"models:/{r.model_name}/{reg['version']}"})
    files.write_csv("reports/register_test_predictions.csv", pd.concat([test[["id", "category"]], out], axis=1).round(4))
    stage.write_timings("register")
    log.info("registered %s version %d (%s%s); end-to-end test accuracy %.4f (%d of %d text only); fusion stage %.4f",
             r.model_name, reg["version"], selected["name"],
             f", alias {r.alias}: {reg['reason']}" if reg["promoted"] else
             f", alias {r.challenger_alias}; {r.alias} stays on "
             f"{'v' + str(reg['alias_version']) if reg['alias_version'] else 'no version'}: {reg['reason']}",
             metrics["test_accuracy"], metrics["n_test_text_only"], metrics["n_test"],
             scores.get("test_accuracy") or float("nan"))


if __name__ == "__main__":
    run_stage(main)
