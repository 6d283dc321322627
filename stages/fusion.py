"""Stage fusion: text set + image set (from params) -> heads fitted on train ids only, test metrics
for each modality alone and for each fusion mode, plus repeated stratified CV on train+val."""
import _bootstrap  # noqa: F401
import sys

import pandas as pd

from fkstudy import io, tracking
from fkstudy.plots import train as tplots
from fkstudy.runtime import log, start_stage, timed
from fkstudy.train import heads, track

params = start_stage("fusion")
p, seed, experiment = params["fusion"], params["seed"], params["mlflow"]["experiment"]
text_path = f"data/features/text/{p['text_set']}.npz"
image_path = f"data/features/image/{p['image_set']}.npz"
T, t_ids, t_meta = io.load_features(text_path)
I, i_ids, i_meta = io.load_features(image_path)
try:
    image_weights = heads.require_real_weights(i_meta, image_path)
except ValueError as exc:
    sys.exit(f"fusion: {exc}")
catalog = pd.read_parquet("data/interim/catalog.parquet")
classes = sorted(catalog["category"].unique())

metrics = {"text_set": p["text_set"], "image_set": p["image_set"], "image_weights": image_weights,
           "head": p["head"]["type"]}
per_class, timing = {}, {}
with tracking.run(experiment, "fusion", f"fusion-{p['text_set']}+{p['image_set']}",
                  {**p, "seed": seed}, tags={"text_set": p["text_set"], "image_set": p["image_set"],
                                             "weights": image_weights}):
    with timed("fusion", timing, "seconds"):
        for mode in p["modes"]:
            r = heads.late_fusion(T, t_ids, I, i_ids, catalog, mode, p["head"], seed)
            if "text_test_accuracy" not in metrics:  # single modalities: the same in every mode
                metrics.update(n_train=r["n_train"], n_val=r["n_val"], n_test=r["n_test"])
                for m in ("text", "image"):
                    metrics[f"{m}_test_accuracy"] = r[m]["test"]["accuracy"]
                    metrics[f"{m}_macro_f1"] = r[m]["test"]["macro_f1"]
                    per_class[f"{m} ({p[f'{m}_set']})"] = r[m]["test"]["per_class"]
                metrics["best_single_test_accuracy"] = max(metrics["text_test_accuracy"],
                                                           metrics["image_test_accuracy"])
            f = r["fusion"]
            metrics[f"{mode}_test_accuracy"] = f["test"]["accuracy"]
            metrics[f"{mode}_macro_f1"] = f["test"]["macro_f1"]
            metrics[f"{mode}_ari"] = f["test"]["ari"]
            metrics[f"{mode}_log_loss"] = f["test"]["log_loss"]
            metrics[f"{mode}_minus_best_single"] = f["test"]["accuracy"] - metrics["best_single_test_accuracy"]
            for k, v in f["chosen"].items():
                metrics[f"{mode}_{k}"] = v
            metrics[f"{mode}_per_class"] = f["test"]["per_class"]
            per_class[f"fusion {mode}"] = f["test"]["per_class"]
            table = heads.confusion_table(r["ids_test"], r["y_test"], f["pred"])
            io.write_csv(f"plots/fusion/{mode}_confusion.csv", table)
            io.save_figure(tplots.confusion_matrix(table, f"fusion {mode}: {p['text_set']} + {p['image_set']} (test)",
                                                   classes), f"plots/fusion/{mode}_confusion.png")
            if f["model"] is not None:
                Z = heads.block_standardize([T[:5], I[:5]], slice(None))  # shape only, for the signature
                track.log_model(f["model"], Z, name=f"fusion_{mode}")
        ids = heads.common_ids(catalog, t_ids, i_ids)
        y = catalog.set_index("id").loc[ids, "category"].to_numpy()
        folds = heads.cross_validate({"text": heads._rows(T, t_ids, ids), "image": heads._rows(I, i_ids, ids)},
                                     ids, y, catalog, p["head"], seed, p["n_splits"], p["n_repeats"],
                                     weight=metrics.get("average_proba_text_weight", 0.5), classes=classes)
    metrics["cv"] = heads.cv_summary(folds)
    metrics.update(timing)
    metrics = heads.rounded(metrics)
    track.log_metrics({k: v for k, v in metrics.items() if not k.endswith("per_class")})

io.write_json("metrics/fusion.json", metrics)
io.write_csv("plots/fusion/cv_folds.csv", folds.round(4))
io.save_figure(tplots.per_class_f1(per_class, f"per-class F1 (test): {p['text_set']} + {p['image_set']}"),
               "plots/fusion/per_class_f1.png")
log.info("fusion %s+%s: text %.4f, image %.4f, %s", p["text_set"], p["image_set"], metrics["text_test_accuracy"],
         metrics["image_test_accuracy"], ", ".join(f"{m} {metrics[f'{m}_test_accuracy']:.4f}" for m in p["modes"]))
