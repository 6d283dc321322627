"""Stage multiseed: one head on one feature file over n seeds -> mean ± std and 95% t-interval."""
import _bootstrap  # noqa: F401
import sys
from pathlib import Path

import pandas as pd

from fkstudy import io, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.plots import train as tplots
from fkstudy.runtime import log, start_stage, timed, write_timings
from fkstudy.train import heads, track

if len(sys.argv) != 2:
    sys.exit("usage: multiseed.py <features.npz>")
path = sys.argv[1]
name = Path(path).stem
params = start_stage("multiseed")
p, seed, experiment = params["multiseed"], params["seed"], params["mlflow"]["experiment"]
X, ids, meta = io.load_features(path, supervised=True)
weights = meta.get("weights", "n/a")
catalog = load_catalog("data/interim/catalog.parquet", features={path: ids})
data = heads.split_by_id(X, ids, catalog)
classes = sorted(catalog["category"].unique())
run_params = {**p, "features": path, "seed": seed}
tags = {"features": name, "weights": weights, "head": p["head"]["type"]}
curves, first = {}, {}


def on_seed(s, fitted, test):
    curves[s] = fitted.curve
    if not first:  # the confusion matrix shown is the first seed's
        pred = fitted.model.predict(data.X_test.astype("float64"))
        first.update(table=heads.confusion_table(data.ids_test, data.y_test, pred), test=test)
    with tracking.run(experiment, f"multiseed@{name}", f"{name}-seed{s}", {**run_params, "run_seed": s},
                      tags={**tags, "run_seed": s}, nested=True):
        track.log_curve(fitted.curve)
        track.log_metrics(heads.rounded(test, 6), "test_")
        track.log_metrics(fitted.chosen)
        track.log_model(fitted.model, data.X_train[:5])


timing: dict = {}
with tracking.run(experiment, f"multiseed@{name}", f"multiseed-{name}", run_params, tags=tags):
    with timed(f"multiseed {name}", timing, "seconds"):
        res = heads.multiseed(data, p["head"], seed, p["n_seeds"], classes, on_seed)
    acc, f1 = res["test_accuracy"], res["macro_f1"]
    metrics = {"features": name, "weights": weights, "head": p["head"]["type"], "n_seeds": p["n_seeds"],
               "n_train": len(data.y_train), "n_val": len(data.y_val), "n_test": len(data.y_test),
               "test_accuracy": acc["mean"], "test_accuracy_std": acc["std"],
               "test_accuracy_ci95_low": acc["ci_low"], "test_accuracy_ci95_high": acc["ci_high"],
               "macro_f1": f1["mean"], "macro_f1_std": f1["std"],
               "macro_f1_ci95_low": f1["ci_low"], "macro_f1_ci95_high": f1["ci_high"],
               "val_accuracy": float(res["per_seed"]["val_accuracy"].mean())}
    metrics = heads.rounded(metrics)
    track.log_metrics({k: v for k, v in metrics.items() if k not in ("n_seeds",)})

io.write_json(f"metrics/multiseed/{name}.json", metrics)
write_timings("multiseed", timing, name)
io.write_csv(f"plots/multiseed/{name}/per_seed.csv", res["per_seed"].round(4))
io.write_csv(f"plots/multiseed/{name}/confusion.csv", first["table"])
if any(c is not None for c in curves.values()):
    io.write_csv(f"plots/multiseed/{name}/curves.csv",
                 pd.concat([c.assign(seed=s) for s, c in curves.items()], ignore_index=True).round(5))
    io.save_figure(tplots.learning_curves({f"seed {s}": c for s, c in curves.items()},
                                          f"{name} ({weights}) {p['head']['type']} head"),
                   f"plots/multiseed/{name}/learning_curves.png")
io.save_figure(tplots.confusion_matrix(first["table"], f"{name}: test confusion (seed {seed})", classes),
               f"plots/multiseed/{name}/confusion.png")
io.save_figure(tplots.per_class_f1(first["test"]["per_class"], f"{name}: per-class F1 (seed {seed})"),
               f"plots/multiseed/{name}/per_class_f1.png")
log.info("%s: test accuracy %.4f ± %.4f (95%% CI %.4f-%.4f) over %d seeds", name, acc["mean"], acc["std"],
         acc["ci_low"], acc["ci_high"], p["n_seeds"])
