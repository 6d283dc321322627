"""The generated study report: narrative order, self-contained HTML, Markdown twin, tables from metrics,
random-init rows marked, targets met / not met, conclusion computed from the numbers, absent stages noted."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from fkstudy import numerics
from fkstudy.image.registry import IMAGE
from fkstudy.report import conclusion, document, reference, study
from fkstudy.report.render import ChromiumNotFound, screenshot
from fkstudy.report.summary import (SUMMARY_COLUMNS, cluster_table, load_tree, markdown_table, replace_between_markers,
                                    train_table)
from fkstudy.text.registry import TEXT
from tests.report_fixtures import PLOTS, make_study, write_timings

ROOT = Path(__file__).resolve().parents[2]


def _build(root: Path):
    metrics = load_tree(root / "metrics", study.METRICS_READ)
    table = cluster_table(root / "metrics/cluster")
    train = train_table(metrics)
    return study.build(metrics, table, train, root=root), metrics, table, train


def _render(root: Path):
    blocks, *_ = _build(root)
    return (document.to_html(blocks, study.TITLE, root=root), document.to_markdown(blocks, study.TITLE, base=".."),
            blocks)


@pytest.fixture
def full(tmp_path):
    return make_study(tmp_path / "study")


def test_sections_follow_the_narrative_in_both_renderings(full):
    html, md, blocks = _render(full)
    assert [b.text for b in blocks if isinstance(b, document.Heading) and b.level == 2] == study.SECTIONS
    assert re.findall(r"<h2 [^>]*>([^<]+)</h2>", html) == study.SECTIONS
    assert re.findall(r"^## (.+)$", md, flags=re.M) == study.SECTIONS
    for sub in ("4.1 bow", "4.3 bert", "5.1 classical", "5.3 clip", "7.2 Transfer learning", "7.4 Zero-shot CLIP",
                "9.1 Calibration", "9.2 Fusion vs the best single modality"):
        assert sub in html and sub in md


def test_html_is_self_contained_with_every_figure_embedded(full):
    html, _, blocks = _render(full)
    figures = [b for b in blocks if isinstance(b, document.Figure)]
    imgs = re.findall(r'<img src="([^"]+)"', html)
    assert len(imgs) == len(figures) >= 30
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    for src in imgs[:3]:
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "not produced" not in html
    # nothing fetched from outside: no external src/href, no <link>/<script>, links only to own anchors
    assert not re.search(r"(src|href)=\"(?!data:|#)", html)
    assert "<link" not in html and "<script" not in html and "http" not in html
    anchors = set(re.findall(r' id="([^"]+)"', html))
    assert set(re.findall(r'href="#([^"]+)"', html)) <= anchors


def test_markdown_twin_links_the_same_figures_by_relative_path(full):
    _, md, blocks = _render(full)
    (full / "reports").mkdir(exist_ok=True)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert linked == [f"../{b.path}" for b in blocks if isinstance(b, document.Figure)]
    assert all((full / "reports" / p).resolve().is_file() for p in linked)


def test_random_init_rows_are_marked(full):
    html, md, _ = _render(full)
    rows = re.findall(r'<tr class="random-init">(.*?)</tr>', html)
    assert any("mobilenetv3small_base" in r for r in rows)
    assert any("image_clip" in r for r in rows) and any(">clip<" in r for r in rows)
    assert not any("vgg16_base" in r for r in rows)
    assert "**random-init (not comparable)**" in md
    assert "mobilenetv3small_base" in study.findings(*_build(full)[1:])["random_init"]


def test_targets_met_and_not_met_from_the_numbers(full):
    _, metrics, table, _ = _build(full)
    got = {t["id"]: (t["value"], t["source"], t["met"]) for t in study.targets(metrics, table)}
    assert list(got) == [t.id for t in reference.TARGETS]
    assert got["ari_bert_family"] == (0.70, "text_bert", False)  # no text_mpnet here; target 0.75
    assert got["ari_tfidf"] == (0.60, "text_tfidf", False)
    assert got["ari_use"] == (None, None, None)  # its stage did not run: not counted
    assert got["ari_vgg16"] == (0.50, "image_vgg16", False)
    assert got["ari_best_image"] == (0.50, "image_vgg16", False)  # clip is random-init: never counts
    assert got["text_macro_f1"] == (0.95, "text classifier bert", False)
    assert got["image_accuracy"] == (0.88, "train vgg16_augmented", True)  # mobilenetv3small (random-init) never
    assert got["fusion_accuracy"] == (0.96, "fusion average_proba@0.6", True)
    assert got["name_only_accuracy"][::2] == (0.91, False)
    assert got["calibration_ece"][::2] == (0.024, True)  # lower is better: 0.024 <= 0.03
    assert got["accuracy_at_80"][::2] == (0.993, True)
    assert got["ari_classical"] == (0.07, "image_classical", False)
    html, _, _ = _render(full)
    targets_html = html[html.index('id="targets"'):]
    assert '<td class="met">✓ met</td>' in targets_html and '<td class="miss">✗ not met</td>' in targets_html
    assert "<td>not run</td>" in targets_html


def test_conclusion_changes_with_the_metrics(full):
    before = study.findings(*_build(full)[1:])
    assert "96.0% of the held-out products" in before["verdict"]
    assert "4 of 11 measured targets are met" in before["verdict"]
    assert "+0.020 (vgg16)" in before["augmentation"]
    assert "0.836 ± 0.003" in before["supervised"] and "seed study 0.802 ± 0.007" in before["supervised"]
    assert "no CLIP weights obtainable offline" in before["zero_shot"]
    path = full / "metrics/text_classifier/bert.json"
    m = json.loads(path.read_text())
    m.update(test_accuracy=0.99, macro_f1=0.985)
    path.write_text(json.dumps(m))
    after = study.findings(*_build(full)[1:])
    assert "99.0% of the held-out products" in after["verdict"]
    assert "5 of 11 measured targets are met" in after["verdict"]
    assert "text classifier (bert) reaches test accuracy 0.990 and macro-F1 0.985" in after["supervised"]


def test_method_descriptions_and_order_come_from_the_registries(full):
    blocks, *_ = _build(full)
    described = {b.text: after.text for b, after in zip(blocks, blocks[1:])
                 if isinstance(b, document.Heading) and b.level == 3 and isinstance(after, document.Para)}
    assert described["4.1 bow"] == TEXT["bow"].description
    assert described["5.1 classical"] == IMAGE["classical"].description
    methods = [b.text.split(" ", 1)[1] for b in blocks
               if isinstance(b, document.Heading) and b.level == 3 and b.text[:2] in ("4.", "5.")]
    assert methods == ([n for n in TEXT if n in ("bow", "tfidf", "bert")]
                       + [n for n in IMAGE if n in ("vgg16", "classical", "clip")])


def test_report_imports_neither_training_code_nor_deep_learning_frameworks():
    code = ("import sys; import fkstudy.report.study, fkstudy.report.summary, fkstudy.report.render; "
            "print([m for m in sys.modules if m.startswith(('torch', 'tensorflow', 'keras', 'fkstudy.train'))])")
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == "[]"


def test_backbone_comparison_table(full):
    blocks, metrics, _, train = _build(full)
    r = train.set_index("model")
    assert r.loc["vgg16_base", "params"] == 14_714_688 + 532_487
    assert r.loc["vgg16_base", "seed_accuracy"] == 0.7952 and pd.isna(r.loc["vgg16_augmented", "seed_accuracy"])
    assert not [c for c in train.columns if "second" in c]
    table = next(b for b in blocks if isinstance(b, document.Table) and "seed study accuracy / params" in b.columns)
    rows = {row[0]: row for row in table.rows}
    assert rows["vgg16_base"][3:7] == ["0.860", "0.850", "0.660", "7 (4)"]
    assert rows["vgg16_base"][-1] == "0.795 / 15,247,175" and rows["vgg16_augmented"][-1] == ""
    # the cost the seed study's section 8.4 compared: one sentence pointing to the benchmarks, no figure
    note = blocks[blocks.index(next(b for b in blocks if getattr(b, "text", "") == "7.2 Transfer learning: "
                                                                                     "backbone comparison")) + 2]
    assert note.text.startswith("Training time per backbone") and "`docs/benchmarks.md`" in note.text
    assert table.marks[[row[0] for row in table.rows].index("mobilenetv3small_base")] == document.RANDOM_INIT
    assert study.best_trained(train)["model"] == "vgg16_augmented"  # random-init never wins
    per_class = next(b for b in blocks if isinstance(b, document.Table) and b.caption.startswith("Per class"))
    assert len(per_class.rows) == 7 and per_class.rows[0][5] == "0.700"  # seed study's Baby Care F1


def test_absent_optional_stages_are_noted_not_fatal(tmp_path):
    root = make_study(tmp_path / "study", optional=False)
    html, md, blocks = _render(root)
    for what in ("transfer learning", "Grad-CAM", "zero-shot classification", "multi-seed training", "label audit"):
        assert f"Not run: {what}" in md
        assert f'<p class="note">Not run: {what}' in html
    assert [b.text for b in blocks if isinstance(b, document.Heading) and b.level == 2] == study.SECTIONS
    # the product manager's answer says in one line each what is missing
    assert "**Name only**: not measured (stage `register` has not written `name_only_test_accuracy`)." in md
    assert "**Label audit**: not run (stage `label_audit` has not written its metrics)." in md
    assert "not registered yet" in md


def test_missing_figure_is_a_visible_note(full):
    (full / "plots/gradcam/correct.png").unlink()
    html, md, _ = _render(full)
    assert "(Grad-CAM: correct predictions: not produced)" in md
    assert html.count("<img ") == len(PLOTS) - 1 - sum(1 for p in PLOTS if _unused(p))


def _unused(rel: str) -> bool:
    """Fixture plots the report does not show (the non-best models' figures, the other fusion confusion)."""
    return (rel.startswith(("train/vgg16_base", "train/mobilenetv3small", "text_classifier/bow/"))
            or rel in ("fusion/concat_confusion.png",)
            or (rel.startswith("cluster/") and not rel.endswith("scatter.png")
                and not rel.startswith(("cluster/text_bert/", "cluster/image_vgg16/"))))


def test_readme_table_keeps_its_compact_format(full):
    table = cluster_table(full / "metrics/cluster")
    md = markdown_table(table)
    lines = md.strip().splitlines()
    assert lines[0] == "| " + " | ".join(SUMMARY_COLUMNS) + " |" and len(lines) == 2 + len(table)
    assert "| text_bert | pretrained | 0.700 ± 0.010 (tsne) |  | 0.500 | 0.600 / 0.580 / 0.700 | 0.400 | 0.75 ✗ |" in md
    m = {**json.loads((full / "metrics/cluster/text_bert.json").read_text()), "tsne_perplexity": 50.0,
         "ari_test_rows": 0.66}   # a set with its own perplexity: said beside its ARI, with the held-out rows' ARI
    (full / "metrics/cluster/text_bert.json").write_text(json.dumps(m))
    assert "| 0.700 ± 0.010 (tsne, perplexity 50) | 0.660 |" in markdown_table(cluster_table(full / "metrics/cluster"))
    assert "| image_clip | **random-init** (not comparable) |" in md
    readme = "intro\n<!-- results:begin -->\nold\n<!-- results:end -->\nrest\n"
    out = replace_between_markers(readme, md, "<!-- results:begin -->", "<!-- results:end -->")
    assert "old" not in out and out.endswith("<!-- results:end -->\nrest\n") and md in out


def test_large_png_is_shrunk_deterministically(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)  # a gradient with pixel noise: many colours, compresses badly
    grad = np.linspace(0, 200, 640)[None, :, None] + np.linspace(0, 50, 480)[:, None, None]
    arr = (grad + rng.integers(0, 6, (480, 640, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size > document.SHRINK_ABOVE_BYTES
    uri = document.data_uri(tmp_path / "big.png")
    assert uri == document.data_uri(tmp_path / "big.png")
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert len(raw) < (tmp_path / "big.png").stat().st_size
    assert Image.open(io.BytesIO(raw)).size == (640, 480)


def test_load_tree_names_a_broken_file(tmp_path):
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster/x.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"cluster/x.json: not valid JSON"):
        load_tree(tmp_path)


def test_screenshot_without_chromium_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    (tmp_path / "r.html").write_text("<html></html>")
    with pytest.raises(ChromiumNotFound, match="scripts/setup.sh"):
        screenshot(tmp_path / "r.html", tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()


def test_dvc_stage_depends_on_everything_the_report_reads():
    stages = yaml.safe_load((Path(__file__).resolve().parents[2] / "dvc.yaml").read_text())["stages"]
    deps = set(stages["report"]["deps"])
    assert {f"metrics/{e}" for e in study.METRICS_READ} <= deps
    assert {f"plots/{e}" for e in study.PLOTS_READ if not e.startswith("report/")} <= deps  # report/: its own outs
    assert {f"reports/{e}" for e in study.REPORTS_READ} <= deps
    assert not [d for d in deps if d.startswith("reports/timings")], "the report reads no wall-clock figure"
    # the evidence files the report reads lie under what it declares
    from fkstudy import paths
    from fkstudy.report import evidence

    assert paths.LABEL_ISSUES in {f"reports/{e}" for e in study.REPORTS_READ}
    for rel in (evidence.FUSION_PREDICTIONS, evidence.LABEL_PAIRS, evidence.LABEL_EXAMPLES,
                "plots/text_classifier/bert/confusion.csv", "plots/train/vgg16_base/confusion.csv"):
        assert any(rel.startswith(f"plots/{e}/") for e in study.PLOTS_READ), rel
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in stages["report"]["outs"] + stages["report"]["plots"]}
    assert {"reports/study_report.html", "reports/study_report.md", "plots/report/backbones.png"} <= outs
    shot = stages["report_screenshot"]
    assert "reports/study_report.html" in shot["deps"]
    assert shot["plots"] == [{"plots/report/study_report.png": {"cache": False}}]


def test_loaders_read_only_the_declared_entries(full):
    (full / "metrics/unlisted.json").write_text("{}")
    metrics = load_tree(full / "metrics", study.METRICS_READ)
    assert "unlisted" not in metrics and "cluster/text_bert" in metrics and "train/vgg16_base" in metrics
    assert set(load_tree(full / "metrics", ("train", "no_such_stage"))) == {
        "train/vgg16_base", "train/vgg16_augmented", "train/mobilenetv3small_base"}


def test_report_stage_copy_of_fixture_plots_is_complete(full):
    """Every figure path the report can show for the fixture exists (guards the fixture itself), and each
    lies under a path the stage declares as a dependency."""
    blocks, *_ = _build(full)
    shown = {b.path for b in blocks if isinstance(b, document.Figure)}
    assert shown == {f"plots/{p}" for p in PLOTS if not _unused(p)}
    assert all(any(p == f"plots/{e}" or p.startswith(f"plots/{e}/") for e in study.PLOTS_READ) for p in shown)
    shutil.rmtree(full / "plots")
    html, _, _ = _render(full)
    # + the label audit's pairs table (plots/label_audit/pairs.csv)
    assert "<img " not in html and html.count("not produced") == len(shown) + 1


# ---------------------------------------------------------------- targets, the product manager's answer,
# calibration, McNemar, bootstrap intervals, label audit

def _edit(path: Path, **changes) -> None:
    """Update a metrics file; a change to None removes the key."""
    m = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    path.write_text(json.dumps(m))


def _section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 1)
    return md[start:] if end < 0 else md[start:end]


def test_lower_is_better_targets_are_met_at_or_below_their_threshold(full):
    from fkstudy.report.formatting import status

    assert status(0.024, 0.03, lower_is_better=True) == "✓ met"
    assert status(0.03, 0.03, lower_is_better=True) == "✓ met"
    assert status(0.031, 0.03, lower_is_better=True) == "✗ not met"
    assert status(0.031, 0.03) == "✓ met" and status(None, 0.03, True) == "not run"
    _, metrics, table, _ = _build(full)
    for ece, met in ((0.024, True), (0.03, True), (0.045, False)):
        metrics["fusion"]["calibration"]["selected"]["test_ece"] = ece
        got = {t["id"]: t for t in study.targets(metrics, table)}["calibration_ece"]
        assert (got["value"], got["met"], got["lower_is_better"]) == (ece, met, True)
    rows = {r[0]: r for r in conclusion.target_rows(study.targets(metrics, table))}
    assert rows["calibration: test ECE of the selected model"][4:] == ["≤ 0.03", "✗ not met"]
    assert rows["text + image fusion test accuracy"][1:] == ["0.960 (fusion average_proba@0.6)", "0.938", "0.924",
                                                             "≥ 0.96", "✓ met"]
    assert rows["registered model, name-only test accuracy"][2:4] == ["not measured", "none"]
    assert rows["USE clustering ARI"][1].startswith("n/a: ") and rows["USE clustering ARI"][5] == "not run"


def test_reference_targets_replace_the_older_constants():
    assert reference.TARGET_TEXT_CLASSIFIER_MACRO_F1 == 0.96 and reference.TARGET_FUSION_TEST_ACCURACY == 0.96
    assert reference.TARGET_ARI["text_bert"] == reference.TARGET_ARI["text_mpnet"] == 0.75
    assert reference.TARGET_ARI["text_tfidf"] == 0.65 and reference.TARGET_ARI["image_vgg16"] == 0.65
    t = reference.TARGET["calibration_ece"]
    assert (t.target, t.lower_is_better, t.now) == (0.03, True, None)


def test_bert_family_target_takes_the_best_family_member(full):
    _, metrics, table, _ = _build(full)
    table = pd.concat([table, table[table["set"] == "text_bert"].assign(set="text_mpnet", ari=0.76)])
    got = {t["id"]: t for t in study.targets(metrics, table)}["ari_bert_family"]
    assert (got["value"], got["source"], got["met"]) == (0.76, "text_mpnet", True)


def test_product_manager_answer_is_computed_from_the_numbers(full):
    from fkstudy.evaluate.bootstrap import intervals
    from tests.report_fixtures import fusion_predictions

    _, md, _ = _render(full)
    answer = _section(md, "11. Conclusion")
    assert answer.index("The answer, for a product manager") < answer.index("**Verdict.**")
    _, stats = intervals([a for _, a, _ in fusion_predictions()], [p for _, _, p in fusion_predictions()])
    _, low, high = stats["accuracy"]
    assert (f"**Expected accuracy: 96.0 %** of products put in the right category (95 % bootstrap interval "
            f"{100 * low:.1f}–{100 * high:.1f} % over 175 test products)") in answer
    assert "registered model `flipkart-product-classifier` (alias `champion`)" in answer
    assert "fusion `average_proba@0.6` of the bert text head and the vgg16 photo head" in answer
    assert "right on 91.0 % of the same test products (macro-F1 0.905)" in answer
    assert ("answer automatically when the top probability (temperature-scaled, T = 1.35) is ≥ 0.820: on test that "
            "is 80.0 % of the products at 99.4 % accuracy; the rest (20.0 %) go to a human") in answer
    assert ("Baby Care ↔ Home Furnishing: 4 mistakes (3 Baby Care products taken for Home Furnishing, 1 the other "
            "way); Home Decor & Festive Needs ↔ Home Furnishing: 2 mistakes") in answer
    assert "5 of 1050 catalogue products (0.5 %) look mislabelled" in answer
    assert "right 97.1 % of the time vs 96.0 % on the official labels" in answer
    _edit(full / "metrics/register.json", name_only_test_accuracy=0.935, name_only_failed=2)
    _, md, _ = _render(full)
    answer = _section(md, "11. Conclusion")
    assert "right on 93.5 % of the same test products" in answer and "2 products without a usable name" in answer
    assert "| registered model, name-only test accuracy | 0.935 (registered flipkart-product-classifier" in answer


def test_calibration_and_mcnemar_in_the_fusion_section(full):
    _, md, blocks = _render(full)
    fusion = _section(md, "9. Fusion: text + image")
    assert ("| selected fusion (average_proba@0.6) | 1.35 | 0.061 → 0.024 | 0.820 | 78.0 % | 80.0 % | 99.4 % | "
            "99.3 % | 98.4 % | 96.0 % |") in fusion
    assert "| text head alone (bert; a product without photo) | 1.60 | 0.080 → 0.041 |" in fusion
    assert "test ECE 0.024 (target ≤ 0.03: ✓ met)" in fusion
    assert any(isinstance(b, document.Figure) and b.path == "plots/fusion/calibration.png" for b in blocks)
    assert ("only fusion right 6 / only text right 4, p = 0.754, so the difference is not significant at 5 %."
            in fusion)
    _edit(full / "metrics/fusion.json", fusion_vs_best_single={"single": "text", "only_a_right": 14,
                                                               "only_b_right": 3, "p_value": 0.0127})
    assert "p = 0.013, so the difference is significant at 5 %." in _render(full)[1]


def test_calibration_and_mcnemar_absent_are_one_line_notes(full):
    _edit(full / "metrics/fusion.json", calibration=None, fusion_vs_best_single=None)
    html, md, _ = _render(full)
    fusion = _section(md, "9. Fusion: text + image")
    calib = fusion[fusion.index("### 9.1"):fusion.index("### 9.2")]
    assert calib.strip().splitlines()[1:] == [
        "", "> Not run: calibration (metrics/fusion.json has no `calibration`; re-run stage `fusion`)."]
    assert "> Not run: McNemar test (metrics/fusion.json has no `fusion_vs_best_single`" in fusion
    assert '<p class="note">Not run: calibration' in html
    assert "**Confidence rule**: not calibrated (metrics/fusion.json has no `calibration`" in _section(
        md, "11. Conclusion")
    got = {t["id"]: t["met"] for t in study.targets(*_build(full)[1:3])}
    assert got["calibration_ece"] is None and got["accuracy_at_80"] is None


def test_bootstrap_intervals_beside_the_main_test_metrics(full):
    _, md, _ = _render(full)
    assert ("Best: **bert**, test accuracy 0.950, macro-F1 0.950 (95 % bootstrap intervals over 140 test products: "
            "accuracy ") in md
    assert "**vgg16_augmented**, test accuracy 0.880, macro-F1 0.870 (95 % bootstrap intervals over 175 test" in md
    assert "test accuracy 0.960 (95 % bootstrap intervals over 175 test products: accuracy" in md
    # predictions that do not reproduce the recorded number belong to another run: no interval
    _edit(full / "metrics/text_classifier/bert.json", test_accuracy=0.97, macro_f1=0.97)
    _, md, _ = _render(full)
    assert "Best: **bert**, test accuracy 0.970, macro-F1 0.970 (target" in md


def test_confused_pairs_count_both_directions():
    from fkstudy.report.evidence import confused_pairs

    actual = ["a", "a", "b", "c", "c", "c", "a"]
    predicted = ["b", "b", "a", "a", "c", "b", "a"]
    assert confused_pairs(actual, predicted) == [("a", "b", 2, 1), ("c", "a", 1, 0), ("c", "b", 1, 0)]
    assert confused_pairs(["a"], ["a"]) == []


def test_label_audit_section(full):
    _, md, blocks = _render(full)
    audit = _section(md, "10. Label audit")
    assert "**5 suspected label errors** (0.5 %: train 1, val 1, test 3)" in audit
    assert "| Baby Care | Home Furnishing | 2 |" in audit
    assert "| 1 | Cotton Baby Bedsheet Set | test | Baby Care | Home Furnishing | 0.910 | 0.030 |" in audit
    assert ("**0.960** on the official labels (7 mistakes) and **0.971** on the test products not flagged "
            "(+1.1 points); 3 test products are flagged, 2 of the model's mistakes are among them") in audit
    assert any(isinstance(b, document.Figure) and b.path == "plots/label_audit/examples.png" for b in blocks)
    (full / "metrics/label_audit.json").unlink()
    _, md, _ = _render(full)
    assert _section(md, "10. Label audit").strip().splitlines()[1:] == [
        "", "> Not run: label audit (stage `label_audit` has not written its metrics)."]


def test_readme_targets_between_their_markers(full):
    _, metrics, table, _ = _build(full)
    md = study.targets_markdown(metrics, table)
    lines = md.strip().splitlines()
    assert lines[0] == "| " + " | ".join(conclusion.TARGET_COLUMNS) + " |" and len(lines) == 2 + len(reference.TARGETS)
    assert "| calibration: test ECE of the selected model | 0.024 (fusion average_proba@0.6, temperature-scaled) | " \
           "not measured | none | ≤ 0.03 | ✓ met |" in md
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    i = readme.index("<!-- results:end -->")
    assert readme[i:].startswith("<!-- results:end -->\n\nTargets (generated by the report stage from metrics/):\n"
                                 "<!-- targets:begin -->\n")
    assert readme.index("<!-- targets:begin -->") < readme.index("<!-- targets:end -->")
    out = replace_between_markers(readme, md, "<!-- targets:begin -->", "<!-- targets:end -->")
    assert md in out and out.count("<!-- targets:end -->") == 1


def test_product_manager_answer_edge_cases(full):
    from fkstudy.report.evidence import Evidence

    _, metrics, _, _ = _build(full)
    metrics["fusion"]["calibration"]["selected"].update(test_coverage_at_threshold=0.0,
                                                        test_accuracy_at_threshold=float("nan"))
    metrics["fusion"].update(fusion_selected="text", fusion_mode="text")
    said = conclusion.answer(metrics, Evidence())
    assert "the text head alone (bert): no fusion beat it" in said[0]
    assert "The registered version serves `average_proba@0.6`" in said[0]  # register predates the selection
    assert "(on 175 test products; no per-product predictions to bootstrap an interval from)" in said[1]
    assert "no test product reaches it, so every product goes to a human" in said[3]
    assert said[4] == "**Most confused categories**: not available (no test predictions of the selected fusion)."
    assert conclusion.answer({}, Evidence())[0].startswith("No recommended model yet")


def test_name_only_line_says_which_head_answered():
    reg = {"name_only_test_accuracy": 0.93, "name_only_test_macro_f1": 0.929, "name_only_answered_by": "name",
           "name_only_confident_share": 0.6, "name_only_confident_accuracy": 0.99}
    line = conclusion._name_only({"register": reg, "fusion": {"name_only": {"text_head_test_accuracy": 0.876}}})
    assert "right on 93.0 %" in line and "the name head answers" in line and "would give 87.6 %" in line
    assert "confidently, right on 99.0 % of those" in line
    older = conclusion._name_only({"register": {"name_only_test_accuracy": 0.876}, "fusion": {}})
    assert "name head" not in older and "87.6 %" in older   # a bundle without a name head: no claim about one


# ---------------------------------------------------------------- no wall-clock figure: the report's files change
# only when the results do (reports/timings is untracked and differs on every run and machine)

# A timing figure ("12.3 s", "40 ms", "2 min", "0.5 s/epoch"), a timings field, a date, a clock time
WALL_CLOCK = re.compile(r"\d\s?(?:s|ms|sec|secs|seconds|min|minutes|h|hours)\b|/\s?epoch\b|_seconds\b|seconds_per"
                        r"|\b(?:19|20)\d\d-\d\d-\d\d\b|\b\d\d:\d\d(?::\d\d)?\b", re.I)


def _text_without_images(text: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)


def _assert_nothing_machine_bound(name: str, text: str, *roots: Path) -> None:
    """No wall-clock figure, date, host name or absolute path in one output file's text."""
    text = _text_without_images(text)
    hit = WALL_CLOCK.search(text)
    assert hit is None, f"{name}: wall-clock figure or date {text[max(hit.start() - 60, 0):hit.end() + 20]!r}"
    for root in roots:
        assert str(root) not in text and str(root.resolve()) not in text, f"{name}: absolute path {root}"
    assert not re.search(r"(?<![\w./])/(?:tmp|home|root|work|usr|var)/", text), f"{name}: an absolute path"
    host = socket.gethostname()
    assert not re.search(rf"\b{re.escape(host)}\b", text), f"{name}: host name {host!r}"


def _in_process_outputs(root: Path) -> dict[str, str]:
    blocks, metrics, table, train = _build(root)
    return {"study_report.md": document.to_markdown(blocks, study.TITLE, base=".."),
            "study_report.html": document.to_html(blocks, study.TITLE, root=root),
            "summary.csv": table.to_csv(index=False), "train.csv": train.to_csv(index=False),
            "report.json": json.dumps(study.report_summary(metrics, table, train, blocks), sort_keys=True),
            "targets.md": study.targets_markdown(metrics, table), "results.md": markdown_table(table)}


def test_report_is_byte_identical_wherever_built_and_whatever_the_timings(tmp_path):
    """Built twice from the same metrics and plots, in two folders, one with random reports/timings records
    (another machine's, another load's): the same bytes, and none of them a time, a date, a host or a path."""
    here, there = make_study(tmp_path / "a"), make_study(tmp_path / "elsewhere/b")
    assert write_timings(there, seed=7)
    first, second = _in_process_outputs(here), _in_process_outputs(there)
    assert first == second
    for name, text in first.items():
        _assert_nothing_machine_bound(name, text, here, there, tmp_path)
    assert first["study_report.md"].count("`docs/benchmarks.md`") == 5  # intro + 4 places a cost stood


def test_wall_clock_check_catches_what_it_must():
    """The pattern the report is held to finds the figures the report used to carry."""
    for text in ("| bert | 384 | pretrained | 137.1 s |", "0.795 / 111.7 s / 15,247,175", "fit 123 s", "12 ms",
                 "fit_seconds,params", "0.5 s/epoch", "generated 2026-11-29", "at 16:57:23"):
        assert WALL_CLOCK.search(text), text
    for text in ("0.700 ± 0.010 (tsne)", "5 suspected label errors", "99.4 %", "3 test products", "T = 1.35",
                 "loss and accuracy per epoch", "15,247,175", "`docs/benchmarks.md`"):
        assert not WALL_CLOCK.search(text), text
    with pytest.raises(AssertionError, match="absolute path"):
        _assert_nothing_machine_bound("x", "see /tmp/study/plots/a.png")


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run_report_stage(repo: Path) -> dict[str, bytes]:
    """stages/report.py of this checkout run in `repo` (a generated study with the real dvc.yaml, params.yaml
    and README.md); returns every file it wrote (new or rewritten), by path."""
    for rel in ("dvc.yaml", "params.yaml", "README.md"):
        shutil.copy2(ROOT / rel, repo / rel)
    before = _snapshot(repo)
    # the avx2 tier runs on every x86-64 CPU the tests meet (the default avx512 one dies with SIGILL on an
    # AVX2-only CPU); the report does no arithmetic a tier could change, and both runs use the same tier
    env = {**os.environ, "MPLBACKEND": "Agg", numerics.MODE_VAR: "avx2"}
    proc = subprocess.run([sys.executable, str(ROOT / "stages/report.py")], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = _snapshot(repo)
    return {rel: data for rel, (mtime, data) in after.items() if before.get(rel, (None, None))[0] != mtime}


@pytest.mark.slow
def test_report_stage_writes_the_same_bytes_with_or_without_timings(tmp_path):
    """The stage itself, twice: once with no reports/timings at all, once (elsewhere) with random records for
    every stage. Every file it writes is byte-identical between the two runs and free of wall-clock figures;
    those files are exactly the stage's declared outputs (plus the README tables)."""
    bare, timed = make_study(tmp_path / "bare"), make_study(tmp_path / "other/timed")
    write_timings(timed, seed=11)
    first, second = _run_report_stage(bare), _run_report_stage(timed)
    assert not (bare / "reports/timings").exists()
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]
    declared = {next(iter(o)) if isinstance(o, dict) else o
                for kind in ("outs", "metrics", "plots") for o in stage.get(kind, [])}
    assert set(first) == set(second) == declared | {"README.md"}
    for rel in sorted(first):
        assert first[rel] == second[rel], f"{rel} differs between a run without and one with reports/timings"
        if rel.endswith(".png"):
            continue
        text = first[rel].decode("utf-8")
        if rel == "README.md":  # the stage writes only the tables between the markers; the rest is hand-written
            text = "".join(text[text.index(f"<!-- {m}:begin -->"):text.index(f"<!-- {m}:end -->")]
                           for m in ("results", "targets"))
        _assert_nothing_machine_bound(rel, text, bare, timed, tmp_path)
    header = first["plots/report/backbones.csv"].decode().splitlines()[0]
    assert header == "model,weights,test_accuracy,macro_f1,params,seed_accuracy"


def test_representations_out_of_the_pipeline_are_named_with_the_reason():
    from fkstudy.image.registry import IMAGE
    from fkstudy.report.sections import not_in_pipeline

    ran = ["classical", "sift_bovw", "orb_bovw", "vgg16", "efficientnet_lite0", "efficientnet_lite2"]
    pretrained = {"clip": {"weights": "missing"}, "efficientnetb0": {"weights": "missing"},
                  "mobilenetv3small": {"weights": "missing"}}
    note = not_in_pipeline(IMAGE, ran, pretrained, "image").text
    assert note.startswith("Not run: efficientnetb0, mobilenetv3small, clip: no pretrained weights here")
    assert "pipeline.deep" in note and "registered but not" not in note
    assert "orb_bovw: registered but not in this run's `pipeline` lists" in \
        not_in_pipeline(IMAGE, [n for n in ran if n != "orb_bovw"], pretrained, "image").text
    assert not_in_pipeline(IMAGE, list(IMAGE), pretrained, "image") is None
