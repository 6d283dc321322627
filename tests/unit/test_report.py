"""The generated study report: narrative order, self-contained HTML, Markdown twin, tables from metrics,
random-init rows marked, targets met / not met, conclusion computed from the numbers, absent stages noted."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from fkstudy.image.registry import IMAGE
from fkstudy.report import document, study
from fkstudy.report.render import ChromiumNotFound, screenshot
from fkstudy.report.summary import (SUMMARY_COLUMNS, cluster_table, load_tree, markdown_table, replace_between_markers,
                                    train_table)
from fkstudy.text.registry import TEXT
from tests.report_fixtures import PLOTS, make_study


def _build(root: Path):
    metrics = load_tree(root / "metrics", study.METRICS_READ)
    timings = load_tree(root / "reports/timings", study.TIMINGS_READ)
    table = cluster_table(root / "metrics/cluster")
    train = train_table(metrics, timings)
    return study.build(metrics, timings, table, train, root=root), metrics, table, train


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
    for sub in ("4.1 bow", "4.3 bert", "5.1 classical", "5.3 clip", "7.2 Transfer learning", "7.4 Zero-shot CLIP"):
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
    got = {t["what"]: (t["value"], t["met"]) for t in study.targets(metrics, table)}
    assert got["clustering ARI, text_bert"] == (0.70, True)
    assert got["clustering ARI, text_tfidf"] == (0.60, False)
    assert got["clustering ARI, text_use"] == (None, None)  # its stage did not run: not counted
    assert got["clustering ARI, best pretrained image representation"] == (0.50, False)  # clip is random-init
    assert got["text classifier macro-F1 (best set)"] == (0.95, False)
    assert got["text + image fusion test accuracy (selected on train+val)"] == (0.96, False)
    html, _, _ = _render(full)
    targets_html = html[html.index('id="targets"'):]
    assert '<td class="met">✓ met</td>' in targets_html and '<td class="miss">✗ not met</td>' in targets_html
    assert "<td>not run</td>" in targets_html


def test_conclusion_changes_with_the_metrics(full):
    before = study.findings(*_build(full)[1:])
    assert "96.0% of the held-out products" in before["verdict"]
    assert "1 of 6 measured targets are met" in before["verdict"]
    assert "+0.020 (vgg16)" in before["augmentation"]
    assert "0.836 ± 0.003" in before["supervised"] and "seed study 0.802 ± 0.007" in before["supervised"]
    assert "no CLIP weights obtainable offline" in before["zero_shot"]
    path = full / "metrics/text_classifier/bert.json"
    m = json.loads(path.read_text())
    m.update(test_accuracy=0.99, macro_f1=0.985)
    path.write_text(json.dumps(m))
    after = study.findings(*_build(full)[1:])
    assert "99.0% of the held-out products" in after["verdict"]
    assert "2 of 6 measured targets are met" in after["verdict"]
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
    assert r.loc["vgg16_base", "fit_seconds"] == 123.4 and r.loc["vgg16_base", "seed_accuracy"] == 0.7952
    assert pd.isna(r.loc["vgg16_augmented", "fit_seconds"])  # no timings file: shown as n/a
    table = next(b for b in blocks
                 if isinstance(b, document.Table) and "seed study accuracy / time / params" in b.columns)
    rows = {row[0]: row for row in table.rows}
    assert rows["vgg16_base"][6] == "123.4 s" and rows["vgg16_augmented"][6] == "n/a"
    assert rows["vgg16_base"][-1] == "0.795 / 111.7 s / 15,247,175"
    assert table.marks[[row[0] for row in table.rows].index("mobilenetv3small_base")] == document.RANDOM_INIT
    assert study.best_trained(train)["model"] == "vgg16_augmented"  # random-init never wins
    per_class = next(b for b in blocks if isinstance(b, document.Table) and b.caption.startswith("Per class"))
    assert len(per_class.rows) == 7 and per_class.rows[0][5] == "0.700"  # seed study's Baby Care F1


def test_absent_optional_stages_are_noted_not_fatal(tmp_path):
    root = make_study(tmp_path / "study", optional=False)
    html, md, blocks = _render(root)
    for what in ("transfer learning", "Grad-CAM", "zero-shot classification", "multi-seed training"):
        assert f"Not run: {what}" in md
        assert f'<p class="note">Not run: {what}' in html
    assert [b.text for b in blocks if isinstance(b, document.Heading) and b.level == 2] == study.SECTIONS
    assert "| n/a |" in md  # extraction times without timings files


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
    assert "| text_bert | pretrained | 0.700 ± 0.010 (tsne) | 0.500 | 0.600 / 0.580 / 0.700 | 0.400 | 0.65 ✓ |" in md
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
    assert {f"reports/timings/{e}" for e in study.TIMINGS_READ} <= deps
    assert {f"plots/{e}" for e in study.PLOTS_READ if not e.startswith("report/")} <= deps  # report/: its own outs
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in stages["report"]["outs"] + stages["report"]["plots"]}
    assert {"reports/study_report.html", "reports/study_report.md", "plots/report/backbones.png"} <= outs
    shot = stages["report_screenshot"]
    assert "reports/study_report.html" in shot["deps"]
    assert shot["plots"] == [{"plots/report/study_report.png": {"cache": False}}]


def test_loaders_read_only_the_declared_entries(full):
    (full / "metrics/unlisted.json").write_text("{}")
    metrics = load_tree(full / "metrics", study.METRICS_READ)
    assert "unlisted" not in metrics and "cluster/text_bert" in metrics and "train/vgg16_base" in metrics
    assert set(load_tree(full / "reports/timings", ("train", "no_such_stage"))) == {
        "train/vgg16_base", "train/mobilenetv3small_base"}


def test_report_stage_copy_of_fixture_plots_is_complete(full):
    """Every figure path the report can show for the fixture exists (guards the fixture itself), and each
    lies under a path the stage declares as a dependency."""
    blocks, *_ = _build(full)
    shown = {b.path for b in blocks if isinstance(b, document.Figure)}
    assert shown == {f"plots/{p}" for p in PLOTS if not _unused(p)}
    assert all(any(p == f"plots/{e}" or p.startswith(f"plots/{e}/") for e in study.PLOTS_READ) for p in shown)
    shutil.rmtree(full / "plots")
    html, _, _ = _render(full)
    assert "<img " not in html and html.count("not produced") == len(shown)
