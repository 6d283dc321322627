"""Stage multiseed@<backbone>: one head on one image feature set over n seeds -> mean ± std and a 95 %
t-interval. The seeds run in `n_jobs` processes, one BLAS thread each (the same numbers as one after the
other). An MLflow parent run (summary metrics and ONE model: the first seed's, whose confusion matrix is
shown) with one nested run per seed (its params, per-epoch curve and metrics)."""
import _bootstrap  # noqa: F401

import pandas as pd

from fkstudy import files, paths, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.data.splits import split_by_id
from fkstudy.evaluate.metrics import confusion_table, rounded
from fkstudy.plots import train as train_plots
from fkstudy.runtime import log, run_stage, stage_argument, start_stage
from fkstudy.train import recipes


def main(argv=None) -> None:
    (name,) = stage_argument(argv, [None], "python stages/multiseed.py <backbone>")  # start_stage: a dvc.yaml stage
    stage = start_stage(f"multiseed@{name}")
    p, seed, experiment = stage.params.multiseed, stage.params.seed, stage.params.mlflow.experiment
    path = paths.features("image", name)
    X, ids, meta = files.load_features(path, supervised=True)
    weights = meta.get("weights", "n/a")
    catalog = load_catalog(paths.CATALOG, features={path: ids})
    data = split_by_id(X, ids, catalog)
    classes = sorted(catalog["category"].unique())
    run_params = {**p.model_dump(), "features": path, "seed": seed}
    tags = {"features": name, "weights": weights, "head": p.head.type}
    curves, first = {}, {}

    def on_seed(s, fitted, test):
        curves[s] = fitted.curve
        if not first:  # the confusion matrix and the model logged are the first seed's
            pred = fitted.model.predict(data.X_test.astype("float64"))
            first.update(table=confusion_table(data.ids_test, data.y_test, pred), test=test, model=fitted.model)
        with tracking.run(experiment, stage.name, f"{name}-seed{s}", {**run_params, "run_seed": s},
                          tags={**tags, "run_seed": s}, nested=True):
            tracking.log_curve(fitted.curve)
            tracking.log_metrics(rounded(test, 6), "test_")
            tracking.log_metrics(fitted.chosen)

    with tracking.run(experiment, stage.name, f"multiseed-{name}", run_params, tags=tags):
        with stage.timed(f"multiseed {name}", "seconds"):
            res = recipes.multiseed(data, p.head, seed, p.n_seeds, classes, on_seed, n_jobs=stage.params.n_jobs)
        acc, f1 = res["test_accuracy"], res["macro_f1"]
        metrics = rounded({"features": name, "weights": weights, "head": p.head.type, "n_seeds": p.n_seeds,
                           "n_train": len(data.y_train), "n_val": len(data.y_val), "n_test": len(data.y_test),
                           "test_accuracy": acc["mean"], "test_accuracy_std": acc["std"],
                           "test_accuracy_ci95_low": acc["ci_low"], "test_accuracy_ci95_high": acc["ci_high"],
                           "macro_f1": f1["mean"], "macro_f1_std": f1["std"],
                           "macro_f1_ci95_low": f1["ci_low"], "macro_f1_ci95_high": f1["ci_high"],
                           "val_accuracy": float(res["per_seed"]["val_accuracy"].mean())})
        tracking.log_metrics({k: v for k, v in metrics.items() if k not in ("n_seeds",)})
        tracking.log_model(first["model"], data.X_train[:5])

    files.write_json(paths.metrics("multiseed", name), metrics)
    stage.write_timings("multiseed", name)
    out = paths.plots("multiseed", name)
    files.write_csv(f"{out}/per_seed.csv", res["per_seed"].round(4))
    files.write_csv(f"{out}/confusion.csv", first["table"])
    if any(c is not None for c in curves.values()):
        files.write_csv(f"{out}/curves.csv",
                        pd.concat([c.assign(seed=s) for s, c in curves.items()], ignore_index=True).round(5))
        files.save_figure(train_plots.learning_curves({f"seed {s}": c for s, c in curves.items()},
                                                      f"{name} ({weights}) {p.head.type} head"),
                          f"{out}/learning_curves.png")
    files.save_figure(train_plots.confusion_matrix(first["table"], f"{name}: test confusion (seed {seed})", classes),
                      f"{out}/confusion.png")
    files.save_figure(train_plots.per_class_f1(first["test"]["per_class"], f"{name}: per-class F1 (seed {seed})"),
                      f"{out}/per_class_f1.png")
    log.info("%s: test accuracy %.4f ± %.4f (95%% CI %.4f-%.4f) over %d seeds", name, acc["mean"], acc["std"],
             acc["ci_low"], acc["ci_high"], p.n_seeds)


if __name__ == "__main__":
    run_stage(main)
