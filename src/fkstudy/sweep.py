"""`fkstudy sweep`: a parameter grid run as queued DVC experiments, chosen on train+val figures only.

  fkstudy sweep run NAME [-j JOBS]       one experiment per grid point (`dvc exp run --queue --name NAME-<i>
                                         -S key=value ... <targets>`), then `dvc queue start -j JOBS`, and wait
  fkstudy sweep select NAME [--apply]    read `dvc exp show --json`, choose, write sweeps/NAME.json
                                         (the table the report shows); --apply puts the choice in the workspace;
                                         --rev COMMIT when commits were made since the run
  fkstudy sweep list                     the sweeps sweeps.yaml declares

A sweep (sweeps.yaml) names a grid of params.yaml keys, the stages to run (`targets`: only what the choice
reads, so a point costs what its figure costs), and the figure chosen on: `<metrics file>:<key>`, with the
key of its seed std. A figure with "test" in its name is refused: nothing is chosen on the test split. The
rule: the best mean replaces the point the workspace runs now (the baseline) only when it beats it by more
than the larger of their two stds (no choice on noise); ties go to the baseline.

Two kinds of sweep:
- one choice (e.g. the TF-IDF settings): `--apply` is `dvc exp apply NAME-<winner>` (nothing when the
  baseline stays);
- one choice per item (`per: pipeline.cluster`, e.g. t-SNE's perplexity per feature set): the figure's file
  names `{item}`; `--apply` writes the items whose best differs from the baseline into the params key
  `write` (e.g. cluster.tsne_perplexity_by_set), comments of params.yaml kept.
Then `dvc repro` runs what the new params change, and params.yaml, dvc.lock and sweeps/ are committed.
Running a sweep again on the same commit replaces its experiments.
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import exp_queue
from .errors import StudyError
from .params import yaml_text
from .params_edit import PARAMS, lookup, set_args, write_param
from .review import revs

SPEC = "sweeps.yaml"
OUT_DIR = "sweeps"   # committed inputs of the report, not pipeline outputs (reports/ holds those)
RULE = ("the best train+val mean replaces the baseline (the workspace's params) only when it beats it by more "
        "than the larger of the two seed stds; ties keep the baseline")


class SweepError(StudyError):
    """A sweep that is badly declared, not run yet, or whose experiments failed."""


@dataclass(frozen=True)
class Sweep:
    name: str
    grid: dict[str, list]
    metric: str                                   # "<metrics file>:<key>"
    std: str | None = None                        # "<metrics file>:<key>" of the metric's seed std
    also: list[str] = field(default_factory=list)  # shown beside it, never chosen on
    fixed: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    per: str | None = None                        # a params key listing the items (one choice per item)
    write: str | None = None                      # the params key the per-item choice goes to
    about: str = ""

    def points(self) -> list[dict]:
        """Every grid combination (the order of sweeps.yaml), with `fixed` set too."""
        keys = list(self.grid)
        return [{**dict(zip(keys, values)), **self.fixed} for values in itertools.product(*self.grid.values())]

    def exp_name(self, i: int) -> str:
        return f"{self.name}-{i}"


def _figure(sweep: str, key: str, value) -> str:
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise SweepError(f"{SPEC}: {sweep}.{key}: expected '<metrics file>:<key>', got {value!r}")
    if "test" in value.split(":")[1].lower():
        raise SweepError(f"{SPEC}: {sweep}.{key}: {value!r} is a test-split figure: a sweep chooses on train+val only")
    return value


def parse(name: str, raw: Any) -> Sweep:
    """One sweep of sweeps.yaml, checked: every error names the sweep and key."""
    if not isinstance(raw, dict):
        raise SweepError(f"{SPEC}: {name}: expected a mapping, got {type(raw).__name__}")
    known = {"grid", "select", "fixed", "targets", "per", "write", "about"}
    if unknown := sorted(set(raw) - known):
        raise SweepError(f"{SPEC}: {name}: unknown key(s) {unknown} (known: {sorted(known)})")
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise SweepError(f"{SPEC}: {name}.grid: expected a mapping of params keys to non-empty lists of values")
    select = raw.get("select")
    if not isinstance(select, dict) or "metric" not in select:
        raise SweepError(f"{SPEC}: {name}.select: expected {{metric: '<file>:<key>', std: '<file>:<key>'}}")
    per, write = raw.get("per"), raw.get("write")
    if (per is None) != (write is None):
        raise SweepError(f"{SPEC}: {name}: `per` and `write` go together (one choice per item, written to a key)")
    if per is not None and (len(grid) != 1 or "{item}" not in select["metric"]):
        raise SweepError(f"{SPEC}: {name}: a per-item sweep varies one key and its metric file names {{item}}")
    targets = raw.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise SweepError(f"{SPEC}: {name}.targets: expected a list of stage names")
    return Sweep(name=name, grid=grid, metric=_figure(name, "select.metric", select["metric"]),
                 std=_figure(name, "select.std", select["std"]) if select.get("std") else None,
                 also=[_figure(name, "select.also", a) for a in select.get("also", [])],
                 fixed=raw.get("fixed") or {}, targets=targets, per=per, write=write, about=raw.get("about", ""))


def load(repo: Path, name: str | None = None) -> dict[str, Sweep]:
    path = repo / SPEC
    if not path.is_file():
        raise SweepError(f"{path}: no sweeps declared (the file is missing)")
    raw = yaml_text(path.read_text(encoding="utf-8")) or {}
    sweeps = {n: parse(n, r) for n, r in raw.items()}
    if name is not None and name not in sweeps:
        raise SweepError(f"{SPEC}: no sweep {name!r} (declared: {', '.join(sweeps) or 'none'})")
    return sweeps


# ---------------------------------------------------------------- running
def _ours(sweep: Sweep, names) -> list[str]:
    pattern = re.compile(rf"^{re.escape(sweep.name)}-\d+$")
    return [n for n in names if n and pattern.match(n)]


def untracked_inputs(repo: Path, params: dict) -> list[str]:
    """What a queued experiment's temp copy (.dvc/tmp/exps, git-tracked files only) also needs: the raw data
    folder, never committed (scripts/setup.sh links it), when params.yaml points inside the repository."""
    raw = lookup(params, "data.raw_dir", PARAMS)
    return [raw] if not Path(raw).is_absolute() and (repo / raw).exists() else []


def run(repo: Path, sweep: Sweep, jobs: int = 1, poll: float = 10.0) -> list[str]:
    """Queue every point, start the queue, wait; returns the experiment names. An earlier run of this sweep on
    the same commit is removed first (its names would clash)."""
    old = _ours(sweep, revs.dvc(repo, "exp", "list", "--name-only").stdout.split())
    if old:
        revs.dvc(repo, "exp", "remove", *old)
        print(f"removed the earlier run of {sweep.name} on this commit: {', '.join(old)}", flush=True)
    t0 = time.monotonic()
    params = yaml_text((repo / PARAMS).read_text(encoding="utf-8"))
    names, copy = [], [a for path in untracked_inputs(repo, params) for a in ("--copy-paths", path)]
    earlier = set(exp_queue.tasks(exp_queue.status(repo)))
    for i, point in enumerate(sweep.points()):
        name = sweep.exp_name(i)
        revs.dvc(repo, "exp", "run", "--queue", "--name", name, *copy, *set_args(point, params), *sweep.targets)
        names.append(name)
        print(f"queued {name}: {json.dumps(point)}", flush=True)
    exp_queue.start(repo, jobs)
    states, _ = exp_queue.wait(repo, jobs, names, ignore=earlier, poll=poll)
    pending = [n for n in names if states.get(n) in ("Queued", "Running")]
    failed = [n for n in names if states.get(n) == "Failed"]
    if failed:   # stop early: the other points would most likely fail the same way
        if queued := [n for n in pending if states.get(n) == "Queued"]:
            revs.dvc(repo, "queue", "remove", *queued)
        raise SweepError(f"sweep {sweep.name}: experiment(s) failed: {', '.join(failed)} "
                         f"(`dvc queue logs {failed[0]}` shows why)")
    print(f"sweep {sweep.name}: {len(names)} experiments in {time.monotonic() - t0:.0f} s (queued and run)", flush=True)
    return names


# ---------------------------------------------------------------- choosing
@dataclass
class Exp:
    name: str
    rev: str
    params: dict
    metrics: dict   # {file: data}


def experiments(show: list[dict]) -> tuple[Exp, dict[str, Exp]]:
    """The baseline commit and its finished experiments (by name) from `dvc exp show --json`."""
    def exp(state: dict) -> Exp:
        data = state.get("data") or {}
        params = (data.get("params") or {}).get(PARAMS, {}).get("data", {})
        metrics = {f: (m or {}).get("data", {}) for f, m in (data.get("metrics") or {}).items()}
        return Exp(state.get("name") or state["rev"][:7], state["rev"], params, metrics)

    commits = [s for s in show if s.get("rev") != "workspace"]
    if not commits:
        raise SweepError("dvc exp show: no baseline commit")
    base = commits[0]
    found = {}
    for rng in base.get("experiments") or []:
        executor = rng.get("executor") or {}
        if executor.get("state", "success") != "success":
            continue
        for state in rng.get("revs") or []:
            if state.get("data") and state.get("name"):
                found[state["name"]] = exp(state)
    return exp(base), found


def figure(exp: Exp, spec: str | None, item: str | None = None) -> float | None:
    if spec is None:
        return None
    path, key = spec.replace("{item}", item or "").split(":")
    if path not in exp.metrics:
        raise SweepError(f"experiment {exp.name}: no metrics file {path} (is it among the sweep's targets?)")
    return float(lookup(exp.metrics[path], key, f"experiment {exp.name}: {path}"))


def choose(rows: list[dict], baseline: int) -> int:
    """The index chosen among rows ({mean, std}) against the baseline's (see RULE)."""
    best = max(range(len(rows)), key=lambda i: (rows[i]["mean"], i == baseline))
    b, w = rows[baseline], rows[best]
    band = max(b["std"] or 0.0, w["std"] or 0.0)
    return best if w["mean"] - b["mean"] > band else baseline


def select(sweep: Sweep, show: list[dict]) -> dict:
    """The sweep's table and choice (no side effect)."""
    base, found = experiments(show)
    points = sweep.points()
    exps = []
    for i, point in enumerate(points):
        e = found.get(sweep.exp_name(i))
        if e is None:
            raise SweepError(f"sweep {sweep.name}: no finished experiment {sweep.exp_name(i)} on "
                             f"{base.rev[:7]} (run `fkstudy sweep run {sweep.name}` first)")
        for k, v in point.items():
            if (ran := lookup(e.params, k, f"experiment {e.name}: {PARAMS}")) != v:
                raise SweepError(f"experiment {e.name}: {k} is {ran!r}, the sweep's "
                                 f"point {i} says {v!r}: sweeps.yaml changed since the run; run it again")
        exps.append(e)
    items = lookup(base.params, sweep.per, PARAMS) if sweep.per else [None]
    table, chosen = [], {}
    for item in items:
        rows = [{"exp": e.name, "rev": e.rev[:7], "params": {k: p[k] for k in sweep.grid},
                 "mean": figure(e, sweep.metric, item), "std": figure(e, sweep.std, item),
                 **{a.split(":")[1]: figure(e, a, item) for a in sweep.also}} for e, p in zip(exps, points)]
        now = _baseline_values(sweep, base.params, item)
        baseline = next((i for i, p in enumerate(points) if all(p[k] == v for k, v in now.items())), None)
        if baseline is None:
            raise SweepError(f"sweep {sweep.name}: the workspace's {now} is not a grid point: add it to the grid "
                             "(the choice is made against what runs now)")
        pick = choose(rows, baseline)
        for i, r in enumerate(rows):
            r.update(baseline=i == baseline, chosen=i == pick)
        table.append({"item": item, "rows": rows})
        chosen[item or sweep.name] = {"exp": rows[pick]["exp"], "params": rows[pick]["params"],
                                      "changed": pick != baseline}
    return {"sweep": sweep.name, "about": sweep.about, "baseline_commit": base.rev, "keys": list(sweep.grid),
            "metric": sweep.metric,
            "std": sweep.std, "also": sweep.also, "targets": sweep.targets, "fixed": sweep.fixed,
            "per": sweep.per, "write": sweep.write, "rule": RULE, "table": table, "chosen": chosen,
            "by_item": _by_item(sweep, base.params, chosen)}


def _by_item(sweep: Sweep, params: dict, chosen: dict) -> dict | None:
    """A per-item sweep's map for `write`: its entries for items this sweep did not cover, kept, then every swept
    item whose chosen value is not the key's default."""
    if not sweep.per:
        return None
    key = next(iter(sweep.grid))
    default = lookup(params, key, PARAMS)
    kept = {k: v for k, v in (lookup(params, sweep.write, PARAMS) or {}).items() if k not in chosen}
    return {**kept, **{item: c["params"][key] for item, c in chosen.items() if c["params"][key] != default}}


def _baseline_values(sweep: Sweep, params: dict, item: str | None) -> dict:
    """The grid keys' values the workspace runs now (for a per-item sweep: the item's own value in `write`,
    else the key's)."""
    if item is None:
        return {k: lookup(params, k, PARAMS) for k in sweep.grid}
    key = next(iter(sweep.grid))
    own = lookup(params, sweep.write, PARAMS) or {}
    return {key: own.get(item, lookup(params, key, PARAMS))}


def apply(repo: Path, sweep: Sweep, result: dict) -> str:
    """Put the choice in the workspace; returns what was done, in words."""
    if sweep.per:
        write_param(repo / PARAMS, sweep.write, result["by_item"])
        return f"{PARAMS}: {sweep.write} = {json.dumps(result['by_item'])}"
    chosen = result["chosen"][sweep.name]
    if not chosen["changed"]:
        return "the baseline stays: nothing to apply"
    from .files import write_text   # here, not at import: pandas would load with every `fkstudy` command

    text = (repo / PARAMS).read_text(encoding="utf-8")
    revs.dvc(repo, "exp", "apply", chosen["exp"])
    # DVC rewrote the experiment's params.yaml whole (block style, comments moved): keep ours, with its values
    write_text(repo / PARAMS, text)
    for key, value in {**chosen["params"], **sweep.fixed}.items():   # the winner's point (Sweep.points)
        write_param(repo / PARAMS, key, value)
    return f"dvc exp apply {chosen['exp']}: {json.dumps(chosen['params'])}"


def table(result: dict) -> tuple[list[str], list[list[str]]]:
    """The sweep's table as text cells (the CLI and the report show the same): one row per grid point, or for a
    per-item sweep one row per item and a column per value. `now` marks the baseline, `chosen` the choice."""
    def cell(r: dict) -> str:
        return f"{r['mean']:.4f}" + (f" ± {r['std']:.4f}" if r["std"] is not None else "")

    def show(v) -> str:
        return v if isinstance(v, str) else json.dumps(v)

    def mark(r: dict) -> str:
        return ", ".join(w for w, on in (("now", r["baseline"]), ("chosen", r["chosen"])) if on)

    keys = result.get("keys") or list(result["table"][0]["rows"][0]["params"])   # the grid's order
    if result["per"]:
        values = [show(r["params"][keys[0]]) for r in result["table"][0]["rows"]]
        columns = ["item", *(f"{keys[0].split('.')[-1]} {v}" for v in values), "chosen"]
        rows = [[b["item"], *(cell(r) + (f" ({mark(r)})" if r["baseline"] else "") for r in b["rows"]),
                 next(v for v, r in zip(values, b["rows"]) if r["chosen"])] for b in result["table"]]
        return columns, rows
    also = [a.split(":")[1] for a in result["also"]]
    columns = [*(k.split(".")[-1] for k in keys), result["metric"].split(":")[1], *also, ""]
    rows = [[*(show(r["params"][k]) for k in keys), cell(r), *(f"{r[a]:.4f}" for a in also), mark(r)]
            for r in result["table"][0]["rows"]]
    return columns, rows


def markdown(result: dict) -> str:
    columns, rows = table(result)
    return "\n".join("| " + " | ".join(line) + " |" for line in [columns, ["---"] * len(columns), *rows])


# ---------------------------------------------------------------- command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["run", "select", "list"])
    p.add_argument("name", nargs="?", help="a sweep of sweeps.yaml")
    p.add_argument("--jobs", "-j", type=int, default=1, help="experiments at once (run; default 1: on 2 cores "
                   "two experiments only share the cores)")
    p.add_argument("--apply", action="store_true", help="select: put the choice in the workspace")
    p.add_argument("--rev", default=None, help="select: the commit the sweep ran on (default: HEAD; a commit made "
                   "since the run moves HEAD off its experiments)")
    p.add_argument("--repo", default=".", help="the repository (default: the one holding the current folder)")


def main(args: argparse.Namespace) -> int:
    from .files import write_json

    try:
        repo = revs.repo_root(Path(args.repo).resolve())
        sweeps = load(repo, args.name)
        if args.action == "list":
            for s in sweeps.values():
                print(f"{s.name}: {len(s.points())} points, {s.metric}{' per ' + s.per if s.per else ''}"
                      f"{'  - ' + s.about if s.about else ''}")
            return 0
        if args.name is None:
            raise SweepError(f"fkstudy sweep {args.action}: name a sweep ({', '.join(sweeps)})")
        sweep = sweeps[args.name]
        if args.action == "run":
            run(repo, sweep, args.jobs)
            return 0
        show = json.loads(revs.dvc(repo, "exp", "show", "--json", "--no-fetch",
                                   *(["--rev", args.rev] if args.rev else [])).stdout)
        result = select(sweep, show)
        print(markdown(result))
        if args.apply:
            result["applied"] = apply(repo, sweep, result)
            print(result["applied"])
        write_json(repo / OUT_DIR / f"{sweep.name}.json", result)
        print(f"wrote {OUT_DIR}/{sweep.name}.json" + ("" if args.apply else " (--apply puts the choice in the "
                                                     "workspace)"))
        return 0
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
