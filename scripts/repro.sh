#!/usr/bin/env bash
# Install everything, link the data, run the whole pipeline (`dvc repro`): only stale stages run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source .venv/bin/activate
dvc repro "$@"
dvc metrics show
