"""The study report, built only from the metrics and plots the pipeline wrote.

`build(...)` returns the report as document blocks in the seed study's narrative order (SECTIONS: data, text
cleaning, each text representation, each image representation, clustering comparison, supervised results,
multi-seed, fusion with its calibration, label audit, conclusion); document.to_markdown / to_html render
them. A stage that did not run shows a visible "not run" note instead of its section's numbers. Rows from
random-init models are marked. No wall-clock figure, date, host name or absolute path: the same metrics and
plots give the same bytes on any machine (costs are in docs/benchmarks.md). The conclusion (the answer for a
product manager first) and the targets table are computed from the numbers (findings.py, conclusion.py), never
typed.

Modules: findings (numbers -> statements, targets, best models), evidence (test predictions -> bootstrap
intervals and confused categories; the label audit's tables), sections (sections 1-6 and the shared
section helpers), results (sections 7-9), audit (section 10), conclusion (section 11 and the README
targets table), document (block model, Markdown / HTML rendering), summary (loading metrics, the summary
tables), reference (the seed study's numbers and the targets).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import audit, conclusion, evidence, results, sections, sweeps
from .conclusion import targets_markdown
from .document import Block, Figure, Heading
from .findings import best_trained, findings, targets

__all__ = ["TITLE", "SECTIONS", "METRICS_READ", "PLOTS_READ", "REPORTS_READ", "build",
           "report_summary", "targets", "targets_markdown", "best_trained", "findings"]

TITLE = "Product classification feasibility study — generated report"
SECTIONS = ["1. Introduction", "2. Data overview", "3. Text cleaning", "4. Text representations",
            "5. Image representations", "6. Clustering comparison", "7. Supervised classification",
            "8. Multi-seed stability", "9. Fusion: text + image", "10. Label audit", "11. Conclusion"]

# What the report reads: the `report` stage in dvc.yaml lists each of these as a dependency (tested).
METRICS_READ = ("ingest.json", "clean_text.json", "prep_images.json", "text_features", "image_features", "cluster",
                "text_classifier", "fine_tune_text", "train", "multiseed", "gradcam.json", "zero_shot.json",
                "fusion.json", "register.json", "label_audit.json", "pretrained.json")
PLOTS_READ = ("ingest/class_balance.png", "ingest/category_tree.png", "ingest/spec_top_values.png",
              "prep_images/dashboard.png", "prep_images/samples.png", "clean_text/examples.csv", "text_features", "cluster", "text_classifier",
              "fine_tune_text", "train", "gradcam", "multiseed", "fusion", "label_audit", "report/ari_comparison.png",
              "report/backbones.png")
REPORTS_READ = ("label_issues.csv",)  # under reports/: the label audit's ranked suspected label errors
# and the sweeps' tables, sweeps/*.json (fkstudy.sweep.OUT_DIR, written by `fkstudy sweep select`)


def build(metrics: dict, table: pd.DataFrame, train: pd.DataFrame, root: str | Path = ".") -> list[Block]:
    """The whole report: `metrics` as loaded by summary.load_tree (METRICS_READ),
    `table` = summary.cluster_table, `train` = summary.train_table; `root` is where plots/ lives."""
    root = Path(root)
    fig = sections.Figures(root)
    said = findings(metrics, table, train)
    ev = evidence.gather(root, metrics, train)
    bodies = [sections.introduction(metrics, said),
              sections.data(metrics, fig),
              sections.cleaning(metrics, root),
              sections.representations("text", metrics, fig, number=4),
              sections.representations("image", metrics, fig, number=5),
              sections.clustering(table, fig) + sweeps.blocks(sweeps.load(root)),
              results.supervised(metrics, train, fig, ev),
              results.multiseed(metrics, fig),
              results.fusion(metrics, fig, ev),
              audit.label_audit(metrics, ev, fig),
              conclusion.conclusion(said, metrics, table, ev)]
    return [block for title, body in zip(SECTIONS, bodies, strict=True) for block in (Heading(title), *body)]


def report_summary(metrics: dict, table: pd.DataFrame, train: pd.DataFrame, blocks: list[Block]) -> dict:
    """metrics/report.json: the summary table's counts, targets measured / met, the best image model with real
    weights and the number of figures in `blocks` (build's output)."""
    measured = targets(metrics, table)
    best_image = best_trained(train)
    return {
        "feature_sets": int(len(table)),
        "beats_seed": int(table["beats_seed"].fillna(False).astype(bool).sum()),
        "with_seed_number": int(table["seed_ari"].notna().sum()),
        "meets_target": int(table["meets_target"].fillna(False).astype(bool).sum()),
        "with_target": int(table["target_ari"].notna().sum()),
        "best_text_set": table.loc[table["modality"] == "text"].sort_values("ari").iloc[-1]["set"],
        "targets_measured": sum(t["met"] is not None for t in measured),
        "targets_met": sum(bool(t["met"]) for t in measured),
        "trained_models": int(len(train)),
        "best_image_model": None if best_image is None else best_image["model"],
        "best_image_model_test_accuracy": None if best_image is None else float(best_image["test_accuracy"]),
        "figures": sum(isinstance(b, Figure) for b in blocks),
    }
