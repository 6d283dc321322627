"""Stage fusion: text set + image set (params) -> every fusion candidate (text alone, image alone,
concat, average / geometric probability pooling at each text weight) fitted on train ids only, scored
on val and by repeated stratified CV on train+val; `fusion.select_by` picks one, then test is predicted
once. Writes metrics/fusion.json, plots/fusion/ and models/fusion/ (the heads for the register stage)."""
import _bootstrap  # noqa: F401
import sys

import mlflow
import pandas as pd

from fkstudy import io, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.plots import fusion as fplots
from fkstudy.plots import train as tplots
from fkstudy.predict.bundle import save_bundle
from fkstudy.runtime import log, start_stage, timed, write_timings
from fkstudy.train import fusion as F
from fkstudy.train import heads, track

params = start_stage("fusion")
p, seed, experiment = params["fusion"], params["seed"], params["mlflow"]["experiment"]
text_path = f"data/features/text/{p['text_set']}.npz"
image_path = f"data/features/image/{p['image_set']}.npz"
T, t_ids, t_meta = io.load_features(text_path, supervised=True)
I, i_ids, i_meta = io.load_features(image_path, supervised=True)
try:
    image_weights = heads.require_real_weights(i_meta, image_path)
except ValueError as exc:
    sys.exit(f"fusion: {exc}")
catalog = load_catalog("data/interim/catalog.parquet", features={text_path: t_ids, image_path: i_ids})
classes = sorted(catalog["category"].unique())

timing: dict = {}
with tracking.run(experiment, "fusion", f"fusion-{p['text_set']}+{p['image_set']}", {**p, "seed": seed},
                  tags={"text_set": p["text_set"], "image_set": p["image_set"], "weights": image_weights}):
    with timed("fusion", timing, "seconds"):
        fit = F.fit_fusion(T, t_ids, I, i_ids, catalog, p["head"], seed, modes=p["modes"], weights=p["text_weights"],
                           n_splits=p["n_splits"], n_repeats=p["n_repeats"], select_by=p["select_by"])
        ev = F.evaluate_fusion(fit, T, t_ids, I, i_ids, catalog)
    metrics = heads.rounded({"text_set": p["text_set"], "image_set": p["image_set"], "image_weights": image_weights,
                             "head": p["head"]["type"], **F.summary(fit, ev)})
    track.log_metrics({k: v for k, v in metrics.items() if not k.endswith("per_class")})
    candidates = F.candidate_table(fit, ev)
    mlflow.set_tag("fusion_selected", fit.selected["name"])
    mlflow.log_table(candidates, "fusion_candidates.json")
    sample = fit.ids_train[:5]
    T5, I5 = heads._rows(T, t_ids, sample), heads._rows(I, i_ids, sample)
    for name in F.heads_needed(fit.selected):  # the heads the selected model runs, with their signatures
        X5 = T5 if name == "text" else I5 if name == "image" else F.concat_features(T5, I5)
        track.log_model(fit.heads[name].model, X5, name=f"fusion_{name}_head")

sel = fit.selected
keep = ("extractor", "framework", "variant", "normalization", "image_cache", "weights", "source", "sha256")
save_bundle("models/fusion", fit.models, {
    "classes": fit.classes, "selected": sel, "select_by": fit.select_by,
    "scores": {k: metrics.get(f"fusion_{k}") for k in ("val_accuracy", "cv_accuracy", "test_accuracy")},
    "text": {"set": p["text_set"], "method": t_meta.get("method"), "params": t_meta.get("params", {}),
             "source": t_meta.get("source"), "dim": int(T.shape[1])},
    "image": {"set": p["image_set"], **{k: i_meta[k] for k in keep if k in i_meta}, "dim": int(I.shape[1])}})

io.write_json("metrics/fusion.json", metrics)
write_timings("fusion", timing)
io.write_csv("plots/fusion/candidates.csv", candidates.round(4))
curves = F.weight_curves(candidates).round(4)
io.write_csv("plots/fusion/weights.csv", curves)
io.save_figure(fplots.weight_curves(curves, fit.selected, f"fusion {p['text_set']} + {p['image_set']}: accuracy "
                                    "against the text weight"), "plots/fusion/weights.png")
shown = {"text": "text", "image": "image", **{m: F.select(fit.candidates, fit.select_by, m)["name"] for m in p["modes"]},
         "fusion": sel["name"]}
io.write_csv("plots/fusion/cv_folds.csv", pd.concat(
    [fit.folds[fit.folds["model"] == cand].assign(model=label) for label, cand in shown.items()]).round(4))
table = heads.confusion_table(ev["ids_test"], ev["y_test"], ev["pred"][sel["name"]])
io.write_csv("plots/fusion/fusion_confusion.csv", table)
io.save_figure(tplots.confusion_matrix(table, f"fusion {sel['name']}: {p['text_set']} + {p['image_set']} (test)",
                                       classes), "plots/fusion/fusion_confusion.png")
per_class = {f"text ({p['text_set']})": ev["test"]["text"]["per_class"],
             f"image ({p['image_set']})": ev["test"]["image"]["per_class"],
             f"fusion ({sel['name']})": ev["test"][sel["name"]]["per_class"]}
io.save_figure(tplots.per_class_f1(per_class, f"per-class F1 (test): {p['text_set']} + {p['image_set']}"),
               "plots/fusion/per_class_f1.png")
log.info("fusion %s+%s: selected %s by %s; test: text %.4f, image %.4f, fusion %.4f", p["text_set"], p["image_set"],
         sel["name"], fit.select_by, metrics["text_test_accuracy"], metrics["image_test_accuracy"],
         metrics["fusion_test_accuracy"])
