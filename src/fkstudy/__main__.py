"""`python -m fkstudy <command>`: command-line entry points of the study package.

  predict   top-3 categories of one product from the registered model (see fkstudy.predict.cli)
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fkstudy", description="Flipkart product classification study")
    sub = parser.add_subparsers(dest="command", required=True)
    from .predict import cli as predict_cli

    predict_cli.add_arguments(sub.add_parser("predict", help="top-3 categories of one product from the registered model",
                                             description=predict_cli.__doc__.split("\n\n")[1]))
    args = parser.parse_args(argv)
    if args.command == "predict":
        return predict_cli.run(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse refuses it first
    return 2


if __name__ == "__main__":
    sys.exit(main())
