"""Stage report_screenshot: the HTML study report rendered by headless Chromium, as a PNG for review.

Kept apart from `report` so the report itself never depends on a browser; without Chromium this stage
stops with a message saying how to install it (scripts/setup.sh).
"""
import _bootstrap  # noqa: F401

from fkstudy.report.render import ChromiumNotFound, screenshot
from fkstudy.runtime import log, start_stage

params = start_stage("report_screenshot")
try:
    screenshot("reports/study_report.html", "plots/report/study_report.png")
except ChromiumNotFound as e:
    raise SystemExit(f"report_screenshot: {e}") from None
log.info("plots/report/study_report.png written")
