#!/usr/bin/env bash
# Review what changed for a pull request: params, metrics (old/new, noise band, verdict), plots and
# stages re-run, as Markdown on stdout and in reports/review.md (a local artefact, not a pipeline
# output); the changed plots side by side in reports/review_plots/index.html (`dvc plots diff`).
#   bash scripts/review.sh                       # the workspace against its merge-base with main
#   bash scripts/review.sh origin/main           # ... against another base
#   bash scripts/review.sh --target my-exp       # a DVC experiment against its baseline
# Every argument goes to `python -m fkstudy review` (see --help). Run `dvc repro` first: the stages and
# plots of the workspace are read from its dvc.lock. Uses .venv when there is one (scripts/setup.sh),
# else the Python on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -f .venv/bin/activate ]; then
  source .venv/bin/activate
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
python -m fkstudy review "$@" --out reports/review.md
