"""Stage report: the study's summary table, comparison chart, Markdown report and README results table."""
import _bootstrap  # noqa: F401
import json
from pathlib import Path

from fkstudy import io
from fkstudy.plots import report as rplots
from fkstudy.report.study import render_markdown
from fkstudy.report.summary import cluster_table, markdown_table, replace_between_markers
from fkstudy.runtime import start_stage

params = start_stage("report")
table = cluster_table(Path("metrics/cluster"))
io.write_csv("reports/summary.csv", table)
io.write_csv("plots/report/ari_comparison.csv", table[["set", "ari", "ari_std", "seed_ari"]])
io.save_figure(rplots.ari_comparison(table), "plots/report/ari_comparison.png")

metrics = {p.relative_to("metrics").with_suffix("").as_posix(): json.loads(p.read_text())
           for p in sorted(Path("metrics").rglob("*.json")) if not p.name.startswith("report")}
results_md = markdown_table(table)
io.write_text("reports/study_report.md", render_markdown(metrics, table, results_md))
readme = Path("README.md")
io.write_text(readme, replace_between_markers(readme.read_text(encoding="utf-8"), results_md,
                                              "<!-- results:begin -->", "<!-- results:end -->"))
io.write_json("metrics/report.json", {
    "feature_sets": int(len(table)),
    "beats_seed": int(table["beats_seed"].fillna(False).astype(bool).sum()),
    "with_seed_number": int(table["seed_ari"].notna().sum()),
    "meets_target": int(table["meets_target"].fillna(False).astype(bool).sum()),
    "with_target": int(table["target_ari"].notna().sum()),
    "best_text_set": table.loc[table["modality"] == "text"].sort_values("ari").iloc[-1]["set"],
})
