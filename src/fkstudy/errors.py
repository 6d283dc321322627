"""Errors the study raises on purpose, and how a stage reports them.

Every check of ours (params, catalog, feature files, weights, leakage, bundles, predict inputs) raises a
subclass of `StudyError`; its message already names the file, row, column or param key at fault. A stage
stopped by one prints `error: <message>` on one line, without a traceback (`fkstudy.runtime.run_stage`);
any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class StudyError(Exception):
    """An expected failure: bad input, a missing prerequisite, a refused leak. The message says what and where."""


def one_line(exc: BaseException) -> str:
    """The message on one line (a multi-line message, e.g. the list of places searched for weights, is
    joined with ' | ')."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " | ".join(lines) or type(exc).__name__
