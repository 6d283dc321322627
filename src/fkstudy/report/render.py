"""Render the HTML report in headless Chromium (Debian package `chromium`, installed by scripts/setup.sh).

Used by the report_screenshot stage (a PNG of the page for review) and by the tests (the DOM after load).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import files
from ..errors import StudyError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class ChromiumNotFound(StudyError, RuntimeError):
    pass


def find_chromium() -> str | None:
    """$CHROMIUM if set, else the first browser of CANDIDATES on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    return next(filter(None, map(shutil.which, CANDIDATES)), None)


def _run(html_path: str | os.PathLike, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise ChromiumNotFound("headless Chromium not found (tried $CHROMIUM, " + ", ".join(CANDIDATES) + "): run "
                               "scripts/setup.sh, which installs the Debian package `chromium`, or set CHROMIUM to a "
                               "Chromium/Chrome binary")
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(f"{html_path}: no such report (run the report stage first)")
    with tempfile.TemporaryDirectory(prefix="fkstudy-chromium-") as profile:  # own profile: parallel runs never clash
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", "--disable-breakpad", f"--user-data-dir={profile}",
               *args, html_path.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:1] + args)} {html_path} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def screenshot(html_path: str | os.PathLike, png_path: str | os.PathLike, width: int = 1280, height: int = 4000,
               timeout: float = 180) -> Path:
    """A PNG of the top width × height pixels of the rendered page, written atomically."""
    png_path = Path(png_path)
    with files.atomic_path(png_path) as tmp:
        _run(html_path, [f"--screenshot={tmp}", f"--window-size={width},{height}"], timeout)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"chromium wrote no screenshot for {html_path}")
    return png_path


def dump_dom(html_path: str | os.PathLike, timeout: float = 180, budget_ms: int = 5000) -> str:
    """The page's DOM after loading (scripts run, images decoded) as Chromium serialises it."""
    return _run(html_path, ["--dump-dom", f"--virtual-time-budget={budget_ms}"], timeout).stdout
