"""`python -m fkstudy review [BASE_REV] [--target REV_OR_EXP] [--out FILE] [--plots-dir DIR] [--no-plots]`

Reviews what changed between two revisions of the study: params, every metric that moved (old / new,
noise band, verdict better / worse / within noise / changed), plots (and the `dvc plots diff` page of
the changed ones), stages that re-ran. Prints Markdown; --out writes it to a file too.

BASE_REV and --target take a git revision or a DVC experiment name. The target defaults to the
workspace (its dvc.lock: run `dvc repro` first). The base defaults to the experiment's baseline when
the target is an experiment, else to the merge-base of HEAD with main (origin/main, master), else HEAD.
An unknown revision or a failed git / DVC command prints one line `error: ...` and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ..evaluate import bootstrap
from . import bands, compare, lockdiff, revs
from .render import Review, render

EXIT_USAGE = 2
MAX_ROWS = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", nargs="?", default=None, metavar="BASE_REV",
                   help="git revision or DVC experiment to compare against (default: the experiment's baseline, "
                        "else the merge-base with main, else HEAD)")
    p.add_argument("--target", default=None, metavar="REV_OR_EXP",
                   help="git revision or DVC experiment name to review (default: the workspace)")
    p.add_argument("--out", default=None, help="also write the Markdown to this file")
    p.add_argument("--plots-dir", default="reports/review_plots",
                   help="where `dvc plots diff` writes the page of changed plots (default reports/review_plots, "
                        "relative to the repository)")
    p.add_argument("--no-plots", action="store_true", help="do not run `dvc plots diff`")
    p.add_argument("--max-rows", type=int, default=MAX_ROWS,
                   help=f"rows per table before '… and N more' (default {MAX_ROWS})")
    p.add_argument("--repo", default=".", help="the repository (default: the one holding the current folder)")


def bootstrap_bands(repo: Path, base: revs.Rev, target: revs.Rev, changes: list[compare.Change],
                    locks: tuple[dict, dict]) -> dict[tuple[str, str], compare.Band]:
    """Bootstrap bands for the numeric changes without a spread of their own, from each revision's
    predictions file of the same stage; the larger of the two revisions' bands."""
    wanted: dict[str, list[compare.Change]] = {}
    for c in changes:
        if compare.needs_band(c):
            wanted.setdefault(c.file, []).append(c)
    out: dict[tuple[str, str], compare.Band] = {}
    for rev, lock, side in ((base, locks[0], "old"), (target, locks[1], "new")):
        for plot in lockdiff.outputs(lock):
            owner = bands.metrics_file_of(plot)
            if not owner or owner[0] not in wanted:
                continue
            text = revs.read_at(repo, rev, plot)
            if not text:
                continue
            try:
                actual, predicted = bands.read_predictions(text)
                widths = bands.half_widths(actual, predicted, {c.key: getattr(c, side) for c in wanted[owner[0]]},
                                           owner[1])
            except ValueError:
                continue
            for key, width in widths.items():
                previous = out.get((owner[0], key))
                if previous is None or width > previous.width:
                    out[(owner[0], key)] = compare.Band(width, f"bootstrap {bootstrap.LEVEL:.0%}".replace("%", " %"))
    return out


def ci_run_url(environ) -> str | None:
    """The GitHub Actions run this review is made in (.github/workflows/review.yml uploads the plots page
    to it), or None outside CI."""
    if environ.get("GITHUB_ACTIONS") != "true" or not environ.get("GITHUB_RUN_ID"):
        return None
    server = environ.get("GITHUB_SERVER_URL", "https://github.com")
    return f"{server}/{environ.get('GITHUB_REPOSITORY', '')}/actions/runs/{environ['GITHUB_RUN_ID']}"


def build(repo: Path, base_spec: str | None, target_spec: str | None, plots_dir: Path | None,
          max_rows: int = MAX_ROWS) -> Review:
    """Everything the report shows, gathered from git and DVC."""
    target = revs.resolve(repo, target_spec)
    base = revs.resolve(repo, base_spec) if base_spec else revs.default_base(repo, target)
    review = Review(base.label, target.label, max_rows=max_rows)
    if target.sha is None:
        stale = revs.stale_stages(repo)
        if stale:
            shown = ", ".join(f"`{s}`" for s in stale[:5]) + (f" (+{len(stale) - 5})" if len(stale) > 5 else "")
            review.notes.append(f"the workspace is not reproduced (`dvc status`: {shown}); stages and plots "
                                "below are those of its dvc.lock — run `dvc repro` first")
    review.params = compare.param_changes(revs.params_diff(repo, base, target))
    diff, failed = revs.metrics_diff(repo, base, target)
    if failed:
        review.notes.append(f"DVC could not load some metrics of {', '.join(failed)}: they show as added or removed")
    locks = (revs.read_lock(repo, base), revs.read_lock(repo, target))
    changes = compare.changed_metrics(diff)
    review.metrics = compare.judge(changes, bootstrap_bands(repo, base, target, changes, locks))
    review.stages = lockdiff.stage_changes(*locks)
    review.plots = lockdiff.plot_changes(*locks)
    if review.plots and plots_dir is not None:
        targets = [p for p, _ in review.plots]
        (plots_dir / "index.html").unlink(missing_ok=True)  # a previous review's page: replace, not mix
        shutil.rmtree(plots_dir / "static", ignore_errors=True)
        try:
            revs.plots_diff(repo, base, target, targets, plots_dir)
            shown = plots_dir.relative_to(repo) if plots_dir.is_relative_to(repo) else plots_dir
            review.plots_html = str(shown / "index.html")
            revisions = " ".join(r.sha[:7] for r in (base, target) if r.sha)
            review.plots_command = f"dvc plots diff {revisions} --targets <the {len(targets)} plots> -o {shown}"
            review.plots_run = ci_run_url(os.environ)
        except revs.ReviewError as exc:
            review.notes.append(f"`dvc plots diff` failed: {exc}")
    return review


def run(args) -> int:
    from ..errors import StudyError, one_line

    try:
        repo = revs.repo_root(Path(args.repo).resolve())
        plots_dir = None if args.no_plots else (repo / args.plots_dir).resolve()
        text = render(build(repo, args.base, args.target, plots_dir, args.max_rows))
    except StudyError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        from ..files import write_text

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, text)
    sys.stdout.write(text)
    return 0
