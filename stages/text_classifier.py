"""Stage text_classifier@<method>: a head on one text feature set -> test metrics + repeated CV on train+val,
one MLflow run (metrics, per-class scores, the model with its signature)."""
import _bootstrap  # noqa: F401

from fkstudy import files, paths, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.evaluate.metrics import rounded
from fkstudy.plots import train as train_plots
from fkstudy.runtime import log, run_stage, stage_argument, start_stage
from fkstudy.train import recipes


def main(argv=None) -> None:
    (name,) = stage_argument(argv, [None], "python stages/text_classifier.py <text method>")  # start_stage: a dvc.yaml stage
    stage = start_stage(f"text_classifier@{name}")
    p, seed = stage.params.text_classifier, stage.params.seed
    path = paths.features("text", name)
    X, ids, meta = files.load_features(path, supervised=True)
    catalog = load_catalog(paths.CATALOG, features={path: ids})
    classes = sorted(catalog["category"].unique())

    with tracking.run(stage.params.mlflow.experiment, stage.name, f"text_classifier-{name}",
                      {**p.model_dump(), "features": path, "seed": seed}, tags={"features": name, "modality": "text"}):
        with stage.timed(f"text_classifier {name}", "seconds"):
            r = recipes.text_classifier(X, ids, catalog, p.head, seed, p.n_splits, p.n_repeats, p.targets)
        t = r["test"]
        metrics = rounded({"set": name, "head": p.head.type, "dim": int(X.shape[1]), "target": r["target"],
                           "test_accuracy": t["accuracy"], "macro_f1": t["macro_f1"], "micro_f1": t["micro_f1"],
                           "weighted_f1": t["weighted_f1"], "ari": t["ari"], "log_loss": t["log_loss"],
                           **r["cv"], **r["fitted"].chosen, "per_class": t["per_class"],
                           "cv_accuracy_by_target": {k: v["cv_accuracy"] for k, v in r["cv_by_target"].items()}})
        tracking.log_metrics({k: v for k, v in {**metrics, **stage.timings}.items() if k != "per_class"})  # flattened
        tracking.log_metrics(t["per_class"], "per_class.")
        tracking.log_model(r["fitted"].model, X[:5])

    files.write_json(paths.metrics("text_classifier", name), metrics)
    stage.write_timings("text_classifier", name)
    out = paths.plots("text_classifier", name)
    files.write_csv(f"{out}/confusion.csv", r["confusion"])
    files.save_figure(train_plots.confusion_matrix(r["confusion"], f"text {name}: test confusion", classes),
                      f"{out}/confusion.png")
    files.save_figure(train_plots.per_class_f1(t["per_class"], f"text {name}: per-class F1 (test)"),
                      f"{out}/per_class_f1.png")
    log.info("%s: test macro-F1 %.4f, CV macro-F1 %.4f ± %.4f", name, metrics["macro_f1"], metrics["cv_macro_f1"],
             metrics["cv_macro_f1_std"])


if __name__ == "__main__":
    run_stage(main)
