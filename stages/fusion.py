"""Stage fusion: text set + image set (params) -> every fusion candidate (text alone, image alone, concat,
average / geometric probability pooling at each text weight) fitted on train ids only, scored on val and by
repeated stratified CV on train+val; `fusion.select_by` picks one, then test is predicted once. Beside them,
the name-only head (`fusion.name_set`: the text set's encoder on the product name alone), which the served
model uses for a product given by its name only. Writes
metrics/fusion.json, plots/fusion/ and models/fusion/ (the heads for the register stage)."""
import _bootstrap  # noqa: F401

import mlflow

from fkstudy import files, fusion_rules, paths, tracking
from fkstudy.data.catalog import load_catalog
from fkstudy.errors import StudyError
from fkstudy.evaluate.bootstrap import mcnemar
from fkstudy.evaluate.metrics import confusion_table, rounded
from fkstudy.plots import fusion as fusion_plots
from fkstudy.plots import train as train_plots
from fkstudy.predict.bundle import save_bundle
from fkstudy.runtime import log, run_stage, start_stage
from fkstudy.train import fusion, fusion_report, name_head
from fkstudy.train.fusion_calibration import calibrate
from fkstudy.train.recipes import require_real_weights


def main() -> None:
    stage = start_stage("fusion")
    p, seed = stage.params.fusion, stage.params.seed
    text_path, image_path = paths.features("text", p.text_set), paths.features("image", p.image_set)
    name_path = paths.features("text", p.name_set)
    T, t_ids, t_meta = files.load_features(text_path, supervised=True)
    I, i_ids, i_meta = files.load_features(image_path, supervised=True)
    N, n_ids, n_meta = files.load_features(name_path, supervised=True)
    image_weights = require_real_weights(i_meta, image_path)
    try:
        name_config = name_head.check_set(p.text_set, t_meta, p.name_set, n_meta)
    except ValueError as exc:
        raise StudyError(str(exc)) from None
    catalog = load_catalog(paths.CATALOG, features={text_path: t_ids, image_path: i_ids, name_path: n_ids})
    classes = sorted(catalog["category"].unique())

    with tracking.run(stage.params.mlflow.experiment, "fusion", f"fusion-{p.text_set}+{p.image_set}",
                      {**p.model_dump(), "seed": seed},
                      tags={"text_set": p.text_set, "image_set": p.image_set, "weights": image_weights}):
        with stage.timed("fusion", "seconds"):
            fit, by_target = fusion.fit_fusion_targets(T, t_ids, I, i_ids, catalog, p.head, seed, modes=p.modes,
                                                       weights=p.text_weights, n_splits=p.n_splits,
                                                       n_repeats=p.n_repeats, select_by=p.select_by, targets=p.targets)
            ev = fusion.evaluate_fusion(fit, T, t_ids, I, i_ids, catalog)
        with stage.timed("name-only head", "name_seconds"):
            nf = name_head.fit(N, n_ids, catalog, p.head, seed, n_splits=p.n_splits, n_repeats=p.n_repeats,
                               targets=p.name_targets)
            n_ev = name_head.evaluate(nf, fit.heads["text"].model, N, n_ids, catalog)
        calibration, cal_tables = calibrate(fit, ev, p.calibration.target_accuracy, p.calibration.bins, name=(nf, n_ev))
        # "fusion beats the best single modality": the single one chosen by CV (not on test), McNemar on test
        single = max(fusion_rules.SINGLE, key=lambda n: fit.candidates.set_index("name").loc[n, f"{fit.select_by}_accuracy"])
        paired = {"single": single, **mcnemar(ev["y_test"], ev["pred"][fit.selected["name"]], ev["pred"][single])}
        metrics = rounded({"text_set": p.text_set, "image_set": p.image_set, "image_weights": image_weights,
                           "head": p.head.type, "target": fit.target,
                           f"{fit.select_by}_accuracy_by_target": by_target, **fusion_report.summary(fit, ev),
                           "name_only": name_head.summary(nf, n_ev, p.name_set), "calibration": calibration,
                           "fusion_vs_best_single": paired})
        tracking.log_metrics({k: v for k, v in metrics.items() if not k.endswith("per_class")})  # nested: flattened
        candidates = fusion_report.candidate_table(fit, ev)
        mlflow.set_tag("fusion_selected", fit.selected["name"])
        mlflow.log_table(candidates, "fusion_candidates.json")
        sample = fit.ids_train[:5]
        T5, I5 = files.align(T, t_ids, sample), files.align(I, i_ids, sample)
        for name in fusion_rules.heads_needed(fit.selected):  # the heads the selected model runs, with their signatures
            X5 = T5 if name == "text" else I5 if name == "image" else fusion_rules.concat_features(T5, I5)
            tracking.log_model(fit.heads[name].model, X5, name=f"fusion_{name}_head")
        tracking.log_model(nf.head.model, files.align(N, n_ids, sample), name="fusion_name_head")

    served = {role: {k: calibration[role][k] for k in ("temperature", "threshold", "target_accuracy")}
              for role in calibration}
    save_bundle(paths.FUSION_MODEL, {**fit.models, "name": nf.head.model},
                fusion_report.bundle_config(fit, metrics, p.text_set, p.image_set, t_meta, i_meta, T.shape[1],
                                            I.shape[1], served, name_config))
    files.write_json(paths.metrics("fusion"), metrics)
    stage.write_timings("fusion")
    out = paths.plots("fusion")
    files.write_csv(f"{out}/candidates.csv", candidates.round(4))
    curves = fusion_report.weight_curves(candidates).round(4)
    files.write_csv(f"{out}/weights.csv", curves)
    files.save_figure(fusion_plots.weight_curves(curves, fit.selected, f"fusion {p.text_set} + {p.image_set}: accuracy "
                                                 "against the text weight"), f"{out}/weights.png")
    files.write_csv(f"{out}/cv_folds.csv", fusion_report.shown_folds(fit, p.modes).round(4))
    sel_tables = cal_tables["selected"]
    files.write_csv(f"{out}/reliability.csv", sel_tables["reliability"].round(4))
    files.write_csv(f"{out}/risk_coverage.csv", sel_tables["risk_coverage"].round(4))
    files.save_figure(fusion_plots.calibration(sel_tables["reliability"], sel_tables["risk_coverage"],
                                               calibration["selected"], f"fusion {fit.selected['name']} (test)"),
                      f"{out}/calibration.png")
    sel = fit.selected
    table = confusion_table(ev["ids_test"], ev["y_test"], ev["pred"][sel["name"]])
    files.write_csv(f"{out}/fusion_confusion.csv", table)
    files.save_figure(train_plots.confusion_matrix(table, f"fusion {sel['name']}: {p.text_set} + {p.image_set} (test)",
                                                   classes), f"{out}/fusion_confusion.png")
    per_class = {f"text ({p.text_set})": ev["test"]["text"]["per_class"],
                 f"image ({p.image_set})": ev["test"]["image"]["per_class"],
                 f"fusion ({sel['name']})": ev["test"][sel["name"]]["per_class"]}
    files.save_figure(train_plots.per_class_f1(per_class, f"per-class F1 (test): {p.text_set} + {p.image_set}"),
                      f"{out}/per_class_f1.png")
    log.info("fusion %s+%s: selected %s by %s; test: text %.4f, image %.4f, fusion %.4f; name only (%s): %.4f "
             "(the text head on names: %.4f)", p.text_set, p.image_set, sel["name"], fit.select_by,
             metrics["text_test_accuracy"], metrics["image_test_accuracy"], metrics["fusion_test_accuracy"], p.name_set,
             metrics["name_only"]["test_accuracy"], metrics["name_only"]["text_head_test_accuracy"])


if __name__ == "__main__":
    run_stage(main)
