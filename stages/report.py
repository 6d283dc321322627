"""Stage report: summary table, comparison charts, the study report (HTML + Markdown twin), README results and
targets tables. Reads metrics/, plots/ and reports/label_issues.csv only, never reports/timings: every file it
writes is the same, byte for byte, for the same inputs on any machine."""
import _bootstrap  # noqa: F401
from pathlib import Path

from fkstudy import files, paths
from fkstudy.plots import report as report_plots
from fkstudy.report import document, study
from fkstudy.report.summary import cluster_table, load_tree, markdown_table, replace_between_markers, train_table
from fkstudy.runtime import log, run_stage, start_stage


def main() -> None:
    start_stage("report")
    metrics = load_tree("metrics", study.METRICS_READ)
    table = cluster_table(Path(paths.metrics_dir("cluster")))
    train = train_table(metrics)

    files.write_csv("reports/summary.csv", table)
    files.write_csv(paths.plots("report", "ari_comparison.csv"), table[["set", "ari", "ari_std", "seed_ari"]])
    files.save_figure(report_plots.ari_comparison(table), paths.plots("report", "ari_comparison.png"))
    files.write_csv(paths.plots("report", "backbones.csv"),
                    train[["model", "weights", "test_accuracy", "macro_f1", "params", "seed_accuracy"]])
    files.save_figure(report_plots.backbone_comparison(train), paths.plots("report", "backbones.png"))

    blocks = study.build(metrics, table, train, root=".")
    files.write_text("reports/study_report.md", document.to_markdown(blocks, study.TITLE, base=".."))
    files.write_text("reports/study_report.html", document.to_html(blocks, study.TITLE, root="."))
    log.info("reports/study_report.html: %.1f MB, %d figures", Path("reports/study_report.html").stat().st_size / 1e6,
             sum(isinstance(b, document.Figure) for b in blocks))

    readme = Path("README.md")
    text = replace_between_markers(readme.read_text(encoding="utf-8"), markdown_table(table),
                                   "<!-- results:begin -->", "<!-- results:end -->")
    text = replace_between_markers(text, study.targets_markdown(metrics, table),
                                   "<!-- targets:begin -->", "<!-- targets:end -->")
    files.write_text(readme, text)
    files.write_json(paths.metrics("report"), study.report_summary(metrics, table, train, blocks))


if __name__ == "__main__":
    run_stage(main)
