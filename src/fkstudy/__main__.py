"""`python -m fkstudy <command>`: command-line entry points of the study package.

  predict   top-3 categories of one product, or of a CSV file of products, from the registered model
            (see fkstudy.predict.cli)
  promote   move the production alias (champion) to a registered version, explicitly and logged
            (see fkstudy.predict.promote_cli)
  review    Markdown review of what changed between two revisions or experiments (see fkstudy.review.cli)
  push      `dvc push --run-cache`, plus the outputs of every run the run cache records (see fkstudy.team)
  exp-pull  `dvc exp pull` that names the outputs an experiment came without (see fkstudy.team)
  sweep     a parameter grid run as queued DVC experiments, chosen on train+val figures (see fkstudy.sweep)

Installed by scripts/setup.sh as the command `fkstudy` (pyproject.toml); `python -m fkstudy` is the same.
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fkstudy", description="Flipkart product classification study")
    sub = parser.add_subparsers(dest="command", required=True)
    from .predict import cli as predict_cli

    predict_cli.add_arguments(sub.add_parser("predict", help="top-3 categories of one product or of a CSV file of "
                                             "products from the registered model", description=predict_cli.__doc__,
                                             formatter_class=argparse.RawDescriptionHelpFormatter))
    from .predict import promote_cli

    promote_cli.add_arguments(sub.add_parser("promote", help="move the production alias (champion) to a registered "
                                             "version, explicitly and logged", description=promote_cli.__doc__,
                                             formatter_class=argparse.RawDescriptionHelpFormatter))
    from .review import cli as review_cli

    review_cli.add_arguments(sub.add_parser("review", help="Markdown review of params, metrics, plots and stages "
                                            "changed between two revisions or experiments", description=review_cli.__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter))
    from . import team

    team.add_push_arguments(sub.add_parser("push", help="`dvc push --run-cache`, plus the outputs of every run the "
                                           "run cache records, so teammates' `dvc repro --pull` restores them",
                                           description=team.__doc__,
                                           formatter_class=argparse.RawDescriptionHelpFormatter))
    team.add_arguments(sub.add_parser("exp-pull", help="`dvc exp pull`, then name the outputs an experiment came "
                                      "without (pushed with --no-cache)", description=team.__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    from . import sweep

    sweep.add_arguments(sub.add_parser("sweep", help="a parameter grid (sweeps.yaml) run as queued DVC experiments "
                                       "and chosen on train+val figures", description=sweep.__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    if args.command == "predict":
        return predict_cli.run(args)
    if args.command == "promote":
        return promote_cli.run(args)
    if args.command == "review":
        return review_cli.run(args)
    if args.command == "push":
        return team.run_push(args)
    if args.command == "exp-pull":
        return team.run(args)
    if args.command == "sweep":
        return sweep.main(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse refuses it first
    return 2


if __name__ == "__main__":
    sys.exit(main())
