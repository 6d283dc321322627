"""Stage report_screenshot: the HTML study report rendered by headless Chromium, as a PNG for review.

Kept apart from `report` so the report itself never depends on a browser; without Chromium this stage
stops with a message saying how to install it (scripts/setup.sh).
"""
import _bootstrap  # noqa: F401

from fkstudy import paths
from fkstudy.report.render import screenshot
from fkstudy.runtime import log, run_stage, start_stage


def main() -> None:
    start_stage("report_screenshot")
    screenshot("reports/study_report.html", paths.plots("report", "study_report.png"))
    log.info("%s written", paths.plots("report", "study_report.png"))


if __name__ == "__main__":
    run_stage(main)
