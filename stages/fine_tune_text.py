"""Stage fine_tune_text@<encoder>: a pretrained sentence encoder fine-tuned end to end with a linear head on the
train products (fkstudy.text.fine_tune), against the same encoder frozen with the text classifiers' head
(`text_classifier.head`: logistic regression, C chosen on val), on the same splits and the same views.

Both see the same examples: every train product once per view in `fine_tune_text.views` (name + description, name
alone); val chooses (the epoch, C); the test products are scored once per view. Outputs: metrics (test and val per
view, both models, McNemar fine-tuned vs frozen per view), the training history, test predictions per view, the
fine-tuned model folder (models/fine_tune_text/<encoder>/) and one MLflow run.
"""
import _bootstrap  # noqa: F401

import numpy as np
import pandas as pd

from fkstudy import files, paths, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.data.splits import assert_no_test
from fkstudy.evaluate.bootstrap import mcnemar
from fkstudy.evaluate.metrics import rounded, scores
from fkstudy.labels import fit_labels, rollup
from fkstudy.plots import train as train_plots
from fkstudy.runtime import log, run_stage, stage_argument, start_stage
from fkstudy.text import encoders, fine_tune
from fkstudy.text.registry import FINE_TUNABLE
from fkstudy.train import heads

def view_rows(text: pd.DataFrame, split: str, views) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(docs, labels, ids, view) of one split, every product once per view (views in order)."""
    sub = text[text["split"] == split]
    docs = [d for v in views for d in sub[f"raw_{v}"].fillna("").tolist()]
    n = len(sub)
    return (docs, np.tile(sub["category"].to_numpy(), len(views)), np.tile(sub["id"].to_numpy(), len(views)),
            np.repeat(np.asarray(views, dtype=object), n))


def main(argv=None) -> None:
    import torch

    (name,) = stage_argument(argv, [FINE_TUNABLE], "python stages/fine_tune_text.py <encoder>")
    stage = start_stage(f"fine_tune_text@{name}")
    params, seed = stage.params, stage.params.seed
    p = params.fine_tune_text
    torch.set_num_threads(params.n_jobs)
    text = pd.read_parquet(paths.TEXT)
    classes = sorted(text["category"].unique())
    train, val, test = (view_rows(text, s, p.views) for s in ("train", "val", "test"))
    assert_no_test(train[2], text)
    catalog = load_catalog(paths.CATALOG)
    fit_y, val_y = (fit_labels(catalog, ids, p.target) for ids in (train[2], val[2]))   # never a test product's tree
    source = encoders.bert_model_dir(params.text_features.bert.model_dir)
    tokenizer, encoder = encoders.load_transformer(source)

    def embed(docs):
        return encoders.encode_mean_pooled(tokenizer, encoder, docs, p.batch_size * 2, p.max_length)

    with stage.timed("frozen encoder + head", "frozen_seconds"):
        torch.manual_seed(seed)
        frozen = heads.fit_head(embed(train[0]), fit_y, embed(val[0]), val_y, params.text_classifier.head, seed)
        frozen_test, frozen_classes = rollup(frozen.model.predict_proba(embed(test[0]).astype(np.float64)),
                                             frozen.model.classes_)
    with stage.timed("fine-tuning", "fit_seconds"):
        tuned = fine_tune.fine_tune(tokenizer, encoder, train[0], fit_y, val[0], val[1], p, seed, log)
    with stage.timed("fine-tuned on test", "predict_seconds"):
        tuned_val, tuned_classes = rollup(fine_tune.class_proba(tokenizer, tuned.encoder, tuned.head, val[0],
                                                                p.batch_size * 2, p.max_length), tuned.classes)
        tuned_test = rollup(fine_tune.class_proba(tokenizer, tuned.encoder, tuned.head, test[0], p.batch_size * 2,
                                                  p.max_length), tuned.classes)[0]

    frozen_val = rollup(frozen.model.predict_proba(embed(val[0]).astype(np.float64)), frozen.model.classes_)[0]
    test_scores, val_scores, predictions = {}, {}, []
    for view in p.views:
        rows, vrows = test[3] == view, val[3] == view
        y = test[1][rows]
        ft, fz = scores(y, tuned_test[rows], tuned_classes, classes), scores(y, frozen_test[rows], frozen_classes,
                                                                               classes)
        ft_pred = np.asarray(tuned_classes)[tuned_test[rows].argmax(1)]
        fz_pred = np.asarray(frozen_classes)[frozen_test[rows].argmax(1)]
        test_scores[view] = {"fine_tuned": {**{k: ft[k] for k in ("accuracy", "macro_f1", "log_loss")},
                                            "per_class": ft["per_class"]},
                             "frozen": {k: fz[k] for k in ("accuracy", "macro_f1", "log_loss")},
                             "mcnemar": mcnemar(y, ft_pred, fz_pred)}
        val_scores[view] = {m: scores(val[1][vrows], proba[vrows], c, classes, per_class=False)["accuracy"]
                            for m, proba, c in (("fine_tuned_accuracy", tuned_val, tuned_classes),
                                                ("frozen_accuracy", frozen_val, frozen_classes))}
        predictions.append(pd.DataFrame({"id": test[2][rows], "view": view, "actual": y, "fine_tuned": ft_pred,
                                         "frozen": fz_pred}))
    val_accuracy = scores(val[1], tuned_val, tuned_classes, classes, per_class=False)["accuracy"]
    # the noise band a sweep compares against (fkstudy.sweep): the binomial standard error of the val accuracy
    metrics = rounded({"encoder": name, "protocol": fine_tune.PROTOCOL, "source": str(params.text_features.bert.model_dir
                                                                            or "all-MiniLM-L6-v2 (packaged)"),
                       "views": list(p.views), "target": p.target, "n_train_examples": len(train[0]),
                       "n_classes": len(tuned.classes), "epochs": p.epochs, "best_epoch": tuned.best_epoch,
                       "frozen_C": frozen.chosen.get("C"), "val_loss": float(tuned.history["val_loss"].min()),
                       "val_accuracy": val_accuracy,
                       "val_accuracy_se": np.sqrt(val_accuracy * (1 - val_accuracy) / len(val[1])),
                       "val": val_scores, "test": test_scores})
    with tracking.run(params.mlflow.experiment, stage.name, f"fine_tune_text-{name}",
                      {**p.model_dump(), "encoder": name, "seed": seed}, tags={"modality": "text", "method": name}):
        tracking.log_curve(tuned.history)
        tracking.log_metrics({**metrics, **stage.timings})
    fine_tune.save(tuned, paths.train_model(f"text_{name}_finetuned"))
    files.write_json(paths.metrics("fine_tune_text", name), metrics)
    stage.write_timings("fine_tune_text", name, seconds_per_epoch=round(tuned.seconds_per_epoch, 3))
    out = paths.plots("fine_tune_text", name)
    files.write_csv(f"{out}/history.csv", tuned.history.round(5))
    files.write_csv(f"{out}/test_predictions.csv", pd.concat(predictions, ignore_index=True))
    files.save_figure(train_plots.history(tuned.history, f"{name} fine-tuned: training history", tuned.best_epoch),
                      f"{out}/history.png")
    for view in p.views:
        r = test_scores[view]
        log.info("%s on %s: fine-tuned test accuracy %.4f / macro-F1 %.4f, frozen %.4f / %.4f (McNemar p %.3f)", name,
                 view, r["fine_tuned"]["accuracy"], r["fine_tuned"]["macro_f1"], r["frozen"]["accuracy"],
                 r["frozen"]["macro_f1"], r["mcnemar"]["p_value"])


if __name__ == "__main__":
    run_stage(main)
