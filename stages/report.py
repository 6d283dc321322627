"""Stage report: summary table, comparison charts, the study report (HTML + Markdown twin), README results table."""
import _bootstrap  # noqa: F401
from pathlib import Path

from fkstudy import io
from fkstudy.plots import report as rplots
from fkstudy.report import document, study
from fkstudy.report.summary import cluster_table, load_tree, markdown_table, replace_between_markers, train_table
from fkstudy.runtime import log, start_stage

params = start_stage("report")
metrics = load_tree("metrics", study.METRICS_READ)
timings = load_tree("reports/timings", study.TIMINGS_READ)
table = cluster_table(Path("metrics/cluster"))
train = train_table(metrics, timings)

io.write_csv("reports/summary.csv", table)
io.write_csv("plots/report/ari_comparison.csv", table[["set", "ari", "ari_std", "seed_ari"]])
io.save_figure(rplots.ari_comparison(table), "plots/report/ari_comparison.png")
io.write_csv("plots/report/backbones.csv", train[["model", "weights", "test_accuracy", "macro_f1", "fit_seconds",
                                                  "params", "seed_accuracy"]])
io.save_figure(rplots.backbone_comparison(train), "plots/report/backbones.png")

blocks = study.build(metrics, timings, table, train, root=".")
io.write_text("reports/study_report.md", document.to_markdown(blocks, study.TITLE, base=".."))
io.write_text("reports/study_report.html", document.to_html(blocks, study.TITLE, root="."))
log.info("reports/study_report.html: %.1f MB, %d figures", Path("reports/study_report.html").stat().st_size / 1e6,
         sum(isinstance(b, document.Figure) for b in blocks))

readme = Path("README.md")
io.write_text(readme, replace_between_markers(readme.read_text(encoding="utf-8"), markdown_table(table),
                                              "<!-- results:begin -->", "<!-- results:end -->"))
targets = study.targets(metrics, table)
best_image = study.best_trained(train)
io.write_json("metrics/report.json", {
    "feature_sets": int(len(table)),
    "beats_seed": int(table["beats_seed"].fillna(False).astype(bool).sum()),
    "with_seed_number": int(table["seed_ari"].notna().sum()),
    "meets_target": int(table["meets_target"].fillna(False).astype(bool).sum()),
    "with_target": int(table["target_ari"].notna().sum()),
    "best_text_set": table.loc[table["modality"] == "text"].sort_values("ari").iloc[-1]["set"],
    "targets_measured": sum(t["met"] is not None for t in targets),
    "targets_met": sum(bool(t["met"]) for t in targets),
    "trained_models": int(len(train)),
    "best_image_model": None if best_image is None else best_image["model"],
    "best_image_model_test_accuracy": None if best_image is None else float(best_image["test_accuracy"]),
    "figures": sum(isinstance(b, document.Figure) for b in blocks),
})
