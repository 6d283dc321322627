"""`python -m fkstudy promote (--version N | --alias challenger) [--yes] [--force]`

Moves the production alias (`register.alias`, champion) of `register.model_name` to a registered version,
explicitly: the way to put an experiment's model (registered under `register.challenger_alias`, tagged
with its DVC experiment name) into production. The rule `register.promote` applies (if_better: only when
its selection accuracy >= the current holder's) unless --force. Logged: tags promoted_by / promoted_at /
promoted_from_version / promoted_via / promotion_reason / promotion_run on the version, and an MLflow run
(stage "promote") in the study's experiment. Asks for confirmation unless --yes (required when stdin is
not a terminal). Exit status 0 promoted (or already the holder), 2 refused or failed, with one line
`error: ...` on stderr.
"""
from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", type=int, default=None, help="the registered version to promote")
    which.add_argument("--alias", default=None, help="promote the version holding this alias (e.g. challenger)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true", help="promote even if register.promote (if_better) refuses")
    p.add_argument("--model-name", default=None, help="registered model (default: register.model_name)")


def _settings(args) -> tuple[str, str, str, str | None]:
    """(model name, production alias, promote rule, MLflow experiment) from params.yaml, else the defaults."""
    from . import registry

    try:
        from ..params import load_params

        params = load_params()
        r, experiment = params.register, params.mlflow.experiment
        name, alias, rule = r.model_name, r.alias, r.promote
    except Exception:  # outside the repository
        name, alias, rule, experiment = registry.DEFAULT_NAME, registry.DEFAULT_ALIAS, "always", None
    return args.model_name or name, alias, rule, experiment


def _confirm(question: str) -> bool:
    from .promotion import PromotionRefused

    if not sys.stdin.isatty():
        raise PromotionRefused("stdin is not a terminal: pass --yes to confirm the promotion")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def run(args) -> int:
    import logging
    import os

    import mlflow
    from mlflow import MlflowClient

    from .. import tracking
    from .promotion import PromotionRefused, holder_of, promote

    logging.getLogger("fkstudy").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    name, alias, rule, experiment = _settings(args)
    try:
        if args.alias == alias:
            raise PromotionRefused(f"--alias {alias} is the production alias itself; name the version to promote")
        if not args.yes:
            mlflow.set_tracking_uri(tracking.tracking_uri())
            holder = holder_of(MlflowClient(), name, alias)
            target = f"v{args.version}" if args.version is not None else f"the version holding {args.alias!r}"
            now = f"v{holder.version}" if holder is not None else "no version"
            if not _confirm(f"move {name}@{alias} from {now} to {target}?"):
                print("not promoted", file=sys.stderr)
                return EXIT_USAGE
        out = promote(name, alias, rule, version=args.version, from_alias=args.alias, force=args.force,
                      experiment=experiment)
    except PromotionRefused as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    if out["promoted"]:
        before = f"v{out['previous_alias_version']}" if out["previous_alias_version"] is not None else "none"
        print(f"{name}@{alias}: {before} -> v{out['version']} ({out['reason']}); by {out['promoted_by']} at "
              f"{out['promoted_at']}, MLflow run {out['run_id']}")
    else:
        print(f"{name}@{alias}: unchanged ({out['reason']})")
    return 0
