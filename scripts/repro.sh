#!/usr/bin/env bash
# Install everything, link the data, run the whole pipeline (`dvc repro`): only stale stages run. Ends with
# a short review of what this run changed against HEAD (params, metrics with noise-band verdicts, stages),
# not the hundreds-of-columns `dvc metrics show`; the full results are in reports/study_report.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source .venv/bin/activate
dvc repro "$@"
python -m fkstudy review HEAD --no-plots --max-rows 15
