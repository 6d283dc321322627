"""Stage text_classifier@<set>: a linear head on one text feature file -> test metrics + CV on train+val."""
import _bootstrap  # noqa: F401
import sys

from fkstudy import io, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.plots import train as tplots
from fkstudy.runtime import log, start_stage, timed, write_timings
from fkstudy.train import heads, track

if len(sys.argv) != 3:
    sys.exit("usage: text_classifier.py <set-name> <features.npz>")
name, path = sys.argv[1], sys.argv[2]
params = start_stage(f"text_classifier@{name}")
p, seed = params["text_classifier"], params["seed"]
X, ids, meta = io.load_features(path, supervised=True)
catalog = load_catalog("data/interim/catalog.parquet", features={path: ids})
classes = sorted(catalog["category"].unique())

timing: dict = {}
with tracking.run(params["mlflow"]["experiment"], f"text_classifier@{name}", f"text_classifier-{name}",
                  {**p, "features": path, "seed": seed}, tags={"features": name, "modality": "text"}):
    with timed(f"text_classifier {name}", timing, "seconds"):
        r = heads.text_classifier(X, ids, catalog, p["head"], seed, p["n_splits"], p["n_repeats"])
    t = r["test"]
    metrics = heads.rounded({"set": name, "head": p["head"]["type"], "dim": int(X.shape[1]),
                             "test_accuracy": t["accuracy"], "macro_f1": t["macro_f1"], "micro_f1": t["micro_f1"],
                             "weighted_f1": t["weighted_f1"], "ari": t["ari"], "log_loss": t["log_loss"],
                             **r["cv"], **r["fitted"].chosen, "per_class": t["per_class"]})
    track.log_metrics({k: v for k, v in {**metrics, **timing}.items() if k != "per_class"})
    track.log_metrics(t["per_class"], "per_class.")
    track.log_model(r["fitted"].model, X[:5])

io.write_json(f"metrics/text_classifier/{name}.json", metrics)
write_timings("text_classifier", timing, name)
out = f"plots/text_classifier/{name}"
io.write_csv(f"{out}/confusion.csv", r["confusion"])
io.save_figure(tplots.confusion_matrix(r["confusion"], f"text {name}: test confusion", classes), f"{out}/confusion.png")
io.save_figure(tplots.per_class_f1(t["per_class"], f"text {name}: per-class F1 (test)"), f"{out}/per_class_f1.png")
log.info("%s: test macro-F1 %.4f, CV macro-F1 %.4f ± %.4f", name, metrics["macro_f1"], metrics["cv_macro_f1"],
         metrics["cv_macro_f1_std"])
