"""The review as Markdown (pure): a one-line summary, then tables — params changed, metrics beyond
noise, metrics changed with no noise estimate, metrics within noise (collapsed), plots changed (and the
`dvc plots diff` page), stages re-run — and the rules behind the verdicts. Short enough for a terminal
and a pull-request comment: every table is capped at `max_rows`."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..evaluate.bootstrap import LEVEL, RESAMPLES, SEED
from .compare import Change, ParamChange, groups
from .lockdiff import StageChange

TEXT_WIDTH = 40


@dataclass
class Review:
    base: str  # labels, e.g. "`main` (1a2b3c4)", "the workspace", "experiment `exp-1` (5d6e7f8)"
    target: str
    params: list[ParamChange] = field(default_factory=list)
    metrics: list[Change] = field(default_factory=list)  # judged (compare.judge)
    stages: list[StageChange] = field(default_factory=list)
    plots: list[tuple[str, str]] = field(default_factory=list)
    plots_html: str | None = None  # the page `dvc plots diff` wrote
    plots_command: str | None = None
    plots_run: str | None = None  # in CI: the URL of the workflow run the page is attached to
    notes: list[str] = field(default_factory=list)
    max_rows: int = 20


def value(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:.0f}"
        text = f"{v:.4f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    text = str(v)
    return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"


def signed(d: float | None) -> str:
    if d is None:
        return ""
    text = value(abs(d)) if abs(d) < 1000 else f"{abs(d):.0f}"
    return ("+" if d > 0 else "-") + text


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]], max_rows: int, more: str = "") -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"\n… and {len(rows) - max_rows} more{more}.")
    return lines


def metric_name(c: Change) -> str:
    short = c.file.removeprefix("metrics/").removesuffix(".json")
    return f"{short}: {c.key}"


def band_text(c: Change) -> str:
    return f"±{value(c.band.width)} ({c.band.source})" if c.band else "no noise estimate"


def metric_rows(changes: list[Change]) -> list[list[str]]:
    return [[f"`{metric_name(c)}`", value(c.old), value(c.new), signed(c.delta), band_text(c), f"**{c.verdict}**"]
            for c in changes]


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def summary(r: Review, g: dict[str, list[Change]]) -> str:
    parts = []
    beyond = g["beyond"]
    if beyond:
        counts = {v: sum(c.verdict == v for c in beyond) for v in ("better", "worse", "changed")}
        detail = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        parts.append(f"{plural(len(beyond), 'metric')} moved beyond noise: {detail}")
    elif r.metrics:
        parts.append("no metric moved beyond noise")
    if g["within"]:
        parts.append(f"{len(g['within'])} within noise")
    if g["unbanded"]:
        parts.append(f"{len(g['unbanded'])} changed with no noise estimate")
    if g["other"]:
        parts.append(f"{plural(len(g['other']), 'other value')} changed (counts, settings)")
    if g["added"] or g["removed"]:
        parts.append(f"{len(g['added'])} metric values added, {len(g['removed'])} removed")
    if r.params:
        shown = ", ".join(f"{p.key} {value(p.old)} → {value(p.new)}" for p in r.params[:3])
        more = f" and {len(r.params) - 3} more" if len(r.params) > 3 else ""
        parts.append(f"params changed: {shown}{more}")
    else:
        parts.append("no param changed")
    reran = [s for s in r.stages if s.status != "removed"]
    if reran:
        parts.append(f"{plural(len(reran), 'stage')} re-ran")
    if r.plots:
        parts.append(f"{plural(len(r.plots), 'plot')} changed")
    return "; ".join(parts) + "."


def nothing_changed(r: Review) -> bool:
    return not (r.params or r.metrics or r.stages or r.plots)


def footer() -> list[str]:
    level = f"{LEVEL:.0%}".replace("%", " %")
    return ["---",
            ("<sub>Verdict: a metric is *within noise* when |target − base| ≤ its noise band; beyond it, "
            "*better* or *worse* by its direction (accuracy, F1, precision, recall, ARI, NMI, silhouette: higher "
            "is better; loss: lower), *changed* when its direction is unknown or it has no noise estimate. "
            "Noise band, first available: the metric's own spread in its file (`<x>_std`: 1 std over seeds, or "
            "over CV folds for `cv_*` metrics); else the half-width of a bootstrap "
            f"{level} interval of the test metric ({RESAMPLES} resamples of the test products, seed {SEED}, from "
            "the predictions in `plots/**/confusion.csv`); the larger of the two revisions' bands. Timings are "
            "not compared.</sub>")]


def render(r: Review) -> str:
    lines = [f"## Review: {r.base} → {r.target}", ""]
    lines += [f"> **Note:** {n}" for n in r.notes] + ([""] if r.notes else [])
    if nothing_changed(r):
        lines += [f"Nothing changed between {r.base} and {r.target}: no param, metric, plot or stage differs.", ""]
        return "\n".join(lines + footer()) + "\n"
    g = groups(r.metrics)
    lines += [f"**{summary(r, g)}**", ""]
    if r.params:
        rows = [[f"`{p.key}`", value(p.old), value(p.new)] for p in r.params]
        lines += ["### Params changed", ""] + table(["param", "base", "target"], rows, r.max_rows) + [""]
    header = ["metric", "base", "target", "Δ", "noise band", "verdict"]
    if g["beyond"]:
        lines += ["### Metrics beyond noise", ""]
        lines += table(header, metric_rows(g["beyond"]), r.max_rows, " (`dvc metrics diff` lists all)") + [""]
    if g["unbanded"]:
        lines += ["### Metrics changed, no noise estimate", ""]
        lines += table(header, metric_rows(g["unbanded"]), r.max_rows, " (`dvc metrics diff` lists all)") + [""]
    for group, title in (("within", f"{plural(len(g['within']), 'metric')} within noise"),
                         ("other", f"{plural(len(g['other']), 'other value')} changed (counts, settings)")):
        if g[group]:
            lines += [f"<details><summary>{title}</summary>", ""]
            lines += table(header, metric_rows(g[group]), r.max_rows) + ["", "</details>", ""]
    if g["added"] or g["removed"]:
        by_file: dict[tuple[str, str], int] = {}
        for c in g["added"] + g["removed"]:
            by_file[(c.file, c.verdict)] = by_file.get((c.file, c.verdict), 0) + 1
        rows = [[f"`{f}`", v, str(n)] for (f, v), n in sorted(by_file.items())]
        lines += ["### Metric values added or removed", ""]
        lines += table(["file", "", "values"], rows, r.max_rows) + [""]
    if r.plots:
        lines += ["### Plots changed", ""]
        if r.plots_html:
            lines += [f"Before and after, side by side: `{r.plots_html}`"
                      + (f" (`{r.plots_command}`)" if r.plots_command else "")
                      + (f", attached to [this run]({r.plots_run}) as the artifact `review-plots`" if r.plots_run else ""),
                      ""]
        lines += table(["plot", ""], [[f"`{p}`", s] for p, s in r.plots], r.max_rows) + [""]
    if r.stages:
        rows = [[f"`{s.name}`", s.status, "; ".join(s.reasons)] for s in r.stages]
        lines += ["### Stages re-ran", ""] + table(["stage", "", "why (dvc.lock)"], rows, r.max_rows) + [""]
    return "\n".join(lines + footer()) + "\n"

