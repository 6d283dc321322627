"""The report and report_screenshot stages, run as scripts in a temporary copy, rendered in headless Chromium.

Needs the Debian package `chromium` (scripts/setup.sh installs it): skipped without it on a workstation,
a failure under CI.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fkstudy.report.render import dump_dom, find_chromium
from fkstudy.report.study import SECTIONS
from tests.integration.conftest import ROOT, run
from tests.report_fixtures import make_study

pytestmark = pytest.mark.integration

COUNT_LOADED = ("<script>addEventListener('load',()=>document.body.setAttribute('data-images-ok',"
                "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length))</script>")


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("headless chromium not found: scripts/setup.sh installs the Debian package `chromium`")
        pytest.skip("headless chromium not installed (scripts/setup.sh installs the Debian package `chromium`)")
    return exe


def _stage_copy(dest: Path, outputs_from: Path | None) -> Path:
    """The code, params and README of this checkout; what the report stage reads (metrics, plots, the label
    audit's list; never reports/timings) from `outputs_from` (None: generated)."""
    for rel in ("src", "stages"):
        shutil.copytree(ROOT / rel, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("dvc.yaml", "params.yaml", "README.md"):
        shutil.copy2(ROOT / rel, dest / rel)
    if outputs_from is None:
        make_study(dest)
    else:
        for rel in ("metrics", "plots", "reports/label_issues.csv"):
            if (outputs_from / rel).is_dir():
                shutil.copytree(outputs_from / rel, dest / rel)
            elif (outputs_from / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(outputs_from / rel, dest / rel)
    return dest


def _check_rendered(repo: Path) -> None:
    html_path = repo / "reports/study_report.html"
    html = html_path.read_text(encoding="utf-8")
    n_fig = json.loads((repo / "metrics/report.json").read_text())["figures"]
    assert html.count('<img src="data:image/png;base64,') == n_fig > 10
    probe = repo / "reports/probe.html"  # the report plus a script counting the images the browser decoded
    probe.write_text(html.replace("</body>", COUNT_LOADED + "</body>"), encoding="utf-8")
    dom = dump_dom(probe)
    assert re.findall(r"<h2 [^>]*>([^<]+)</h2>", dom) == SECTIONS
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) == n_fig
    assert f'data-images-ok="{n_fig}"' in dom, "some embedded figures did not decode in Chromium"

    png = repo / "plots/report/study_report.png"
    assert png.stat().st_size > 10_000
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.shape == (4000, 1280)
    assert pixels.std() > 10 and (pixels < 200).mean() > 0.02, "the screenshot is blank"

    md = (repo / "reports/study_report.md").read_text(encoding="utf-8")
    assert re.findall(r"^## (.+)$", md, flags=re.M) == SECTIONS
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (repo / "reports" / link).resolve().is_file(), link
    readme = (repo / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("<!-- results:begin -->"):readme.index("<!-- results:end -->")]
    assert "| feature set | weights | ARI (mean ± std) |" in block


@pytest.mark.parametrize("outputs", ["generated", "committed"])
def test_report_stages_render_in_headless_chromium(chromium, tmp_path, outputs):
    """generated: every optional stage present (train, multiseed, gradcam, zero_shot); committed: this
    checkout's own metrics and plots, whatever stages they cover."""
    repo = _stage_copy(tmp_path / "repo", None if outputs == "generated" else ROOT)
    run([sys.executable, "stages/report.py"], repo)
    run([sys.executable, "stages/report_screenshot.py"], repo)
    _check_rendered(repo)
    if outputs == "generated":
        html = (repo / "reports/study_report.html").read_text(encoding="utf-8")
        assert '<tr class="random-init">' in html and "vgg16_augmented" in html
        assert "Zero-shot CLIP" in html and "no CLIP weights obtainable offline" in html


def test_screenshot_stage_without_chromium_fails_with_the_fix(tmp_path):
    repo = _stage_copy(tmp_path / "repo", None)
    run([sys.executable, "stages/report.py"], repo)
    proc = run([sys.executable, "stages/report_screenshot.py"], repo, env={"CHROMIUM": "/nonexistent/chromium"},
               check=False)
    assert proc.returncode != 0 and "scripts/setup.sh" in proc.stderr
    assert not (repo / "plots/report/study_report.png").exists()
