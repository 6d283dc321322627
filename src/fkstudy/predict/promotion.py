"""Who may move the production alias (`register.alias`, champion): the rule, where a run happens, and
the explicit, logged `python -m fkstudy promote`.

The `register` stage registers a new version on every run. The production alias moves to it only when
all three hold:

  1. the run is not a DVC experiment: DVC_EXP_NAME is unset (or empty);
  2. HEAD is on the branch `register.production_branch` (main), not detached;
  3. the rule `register.promote` says so: `always`, or `if_better` and its selection accuracy >= the
     current holder's (a model with no holder yet is always promoted).

Otherwise the version gets `register.challenger_alias` (challenger) and reports/register.json says why.
Measured with DVC 3.67.1: `dvc exp run` in the workspace, `dvc exp run --temp` and a queued experiment
run by `dvc queue start` all set DVC_EXP_NAME (the `-n` name, else DVC's random one) and
DVC_EXP_BASELINE_REV in the stage's environment, and run the stage on a detached HEAD (the workspace,
or a copy under .dvc/tmp/exps); `dvc repro` sets neither and leaves HEAD on its branch. Either check
alone keeps experiments off the production alias.
"""
from __future__ import annotations

import getpass
import os
import socket
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import StudyError


class PromotionRefused(StudyError, ValueError):
    """An explicit promote the rule forbids (without --force), or that names no existing version."""


@dataclass(frozen=True)
class RunContext:
    """Where a registration happens: the DVC experiment (if any) and the git branch ("" = detached)."""

    exp_name: str = ""
    baseline_rev: str = ""
    branch: str = ""

    @classmethod
    def from_environment(cls, cwd: str | Path | None = None) -> RunContext:
        return cls(exp_name=os.environ.get("DVC_EXP_NAME", "").strip(),
                   baseline_rev=os.environ.get("DVC_EXP_BASELINE_REV", "").strip(), branch=git_branch(cwd))

    def describe(self) -> str:
        if self.exp_name:
            return f"DVC experiment {self.exp_name!r}"
        return f"branch {self.branch!r}" if self.branch else "detached HEAD"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def git_branch(cwd: str | Path | None = None) -> str:
    """The checked-out branch; "" for a detached HEAD (every DVC experiment) or outside a git repository."""
    try:
        r = subprocess.run(["git", "symbolic-ref", "-q", "--short", "HEAD"], cwd=cwd or Path.cwd(),
                           capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def _score(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("-inf")


def rule_allows(rule: str, score: float, holder_score, holder_version, alias: str) -> Decision:
    """The `register.promote` rule alone: may a version with `score` take `alias` from its holder?"""
    if rule not in ("always", "if_better"):
        raise ValueError(f"register.promote must be always or if_better, got {rule!r}")
    if holder_version is None:
        return Decision(True, f"no version held {alias!r} yet")
    if rule == "always":
        return Decision(True, f"register.promote: always (replaces v{holder_version})")
    held = _score(holder_score)
    if score >= held:
        return Decision(True, f"selection accuracy {score:.4f} >= v{holder_version}'s {held:.4f} "
                              "(register.promote: if_better)")
    return Decision(False, f"selection accuracy {score:.4f} < v{holder_version}'s {held:.4f} "
                           "(register.promote: if_better)")


def decide(ctx: RunContext, *, production_branch: str, rule: str, score: float, holder_score=None,
           holder_version=None, alias: str = "champion") -> Decision:
    """May the pipeline run described by `ctx` move the production alias to its new version?"""
    if ctx.exp_name:
        return Decision(False, f"DVC experiment {ctx.exp_name!r}: experiments never move {alias!r} "
                               "(promote explicitly with `python -m fkstudy promote`)")
    if ctx.branch != production_branch:
        where = f"branch {ctx.branch!r}" if ctx.branch else "detached HEAD"
        return Decision(False, f"{where} is not register.production_branch {production_branch!r}: only its "
                               f"pipeline moves {alias!r}")
    return rule_allows(rule, score, holder_score, holder_version, alias)


def who() -> str:
    """user@host, plus the git user.email when one is configured."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    out = f"{user}@{socket.gethostname()}"
    try:
        email = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, timeout=10,
                               check=False).stdout
    except (OSError, subprocess.SubprocessError):
        email = ""
    return f"{out} ({email.strip()})" if email.strip() else out


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------ registry side
def _version(client, name: str, version) -> object:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        try:
            known = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        except MlflowException:
            known = []
        have = f"versions {known[0]}..{known[-1]}" if known else "no version"
        raise PromotionRefused(f"model {name!r} has no version {version} ({have}); nothing promoted") from None


def holder_of(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote(name: str, alias: str, rule: str, *, version=None, from_alias: str | None = None, force: bool = False,
            experiment: str | None = None) -> dict:
    """Move `alias` of model `name` to `version` (or to the version holding `from_alias`), when the rule
    allows it or `force`; logged as tags on the version and as an MLflow run (stage "promote") in
    `experiment`. Returns what happened; raises PromotionRefused when the rule forbids it or the
    version does not exist."""
    import mlflow
    from mlflow import MlflowClient

    from .. import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    client = MlflowClient()
    if (version is None) == (from_alias is None):
        raise PromotionRefused("give exactly one of --version N or --alias NAME")
    if from_alias is not None:
        target = holder_of(client, name, from_alias)
        if target is None:
            raise PromotionRefused(f"no version of model {name!r} holds alias {from_alias!r}; nothing promoted")
    else:
        target = _version(client, name, version)
    holder = holder_of(client, name, alias)
    to_v, from_v = int(target.version), (int(holder.version) if holder is not None else None)
    score = _score(target.tags.get("selection_accuracy"))
    out = {"model_name": name, "alias": alias, "version": to_v, "previous_alias_version": from_v, "forced": force}
    if from_v == to_v:
        return {**out, "promoted": False, "reason": f"v{to_v} already holds {alias!r}"}
    d = rule_allows(rule, score, holder.tags.get("selection_accuracy") if holder else None, from_v, alias)
    if not d.promote and not force:
        raise PromotionRefused(f"refused: {d.reason}; pass --force to promote v{to_v} anyway")
    by, at = who(), now()
    reason = d.reason if d.promote else f"forced over the rule ({d.reason})"
    params = {"model_name": name, "alias": alias, "from_version": from_v if from_v is not None else "none",
              "to_version": to_v, "rule": rule, "force": force}
    with tracking.run(experiment or "flipkart-promote", "promote", f"promote-{name}-v{to_v}", params,
                      tags={"promoted_by": by, "promoted_at": at, "reason": reason}) as run:
        client.set_registered_model_alias(name, alias, str(to_v))
    tags = {"promoted_by": by, "promoted_at": at, "promoted_from_version": str(from_v) if from_v else "none",
            "promoted_via": "python -m fkstudy promote" + (" --force" if force else ""), "promotion_reason": reason,
            "promotion_run": run.info.run_id}
    for k, v in tags.items():
        client.set_model_version_tag(name, str(to_v), k, v)
    return {**out, "promoted": True, "reason": reason, "promoted_by": by, "promoted_at": at,
            "run_id": run.info.run_id}
