#!/usr/bin/env bash
# Install everything, then run the test suite: unit tests on generated data and integration
# tests on a small real subset in a temporary copy of the repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source .venv/bin/activate
set +e
python -m pytest "${@:-tests}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests — that is a failure here" >&2
  exit 1
fi
exit "$rc"
