#!/usr/bin/env bash
# Install everything, link the data, run the whole pipeline (`dvc repro`): only stale stages run. Ends with
# a short review of what this run changed against HEAD (params, metrics with noise-band verdicts, stages),
# not the hundreds-of-columns `dvc metrics show`; the full results are in reports/study_report.md.
#
# With the team's DVC remote set up (.dvc/config.local, README "A team: more machines") it first pulls what a
# teammate already computed — outputs and the run cache — and reproduces with `dvc repro --pull`, so a stage
# whose params a teammate already ran (and pushed with `fkstudy push`) is restored, not run: only what nobody
# pushed yet runs. A remote that cannot be reached (no credentials, no network) costs one line, then
# everything is computed here. Arguments go to `dvc repro` (e.g. a stage name).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source .venv/bin/activate

pull=()
remote=$(dvc remote list | awk '$NF == "(default)" {print $1 " " $2}')
name=${remote%% *}
url=${remote#* }
if [ -z "$remote" ] || [[ "$url" == *SET-YOUR-TEAM-BUCKET* ]]; then
  echo "repro: no team DVC remote set up (README \"A team: more machines\"): computing everything here"
else
  mkdir -p .dvc/tmp
  log=.dvc/tmp/repro-pull.log
  targets=()
  for a in "$@"; do [[ "$a" == -* ]] || targets+=("$a"); done   # stage names: pull those and their inputs
  start=$(date +%s)
  if dvc pull --run-cache --allow-missing --with-deps "${targets[@]}" >"$log" 2>&1; then
    echo "repro: pulled from the DVC remote '$name' ($url) in $(( $(date +%s) - start )) s"
    pull=(--pull)
  else
    # DVC's error on one line: its first ERROR and the paths it names on the lines after it
    why=$(awk '/^ERROR/ {on = 1; sub(/^ERROR: /, "")} on && !/^<http|^Is your cache|^$/ {printf "%s ", $0}' "$log" \
          | cut -c1-300 || true)
    echo "repro: could not pull from the DVC remote '$name' ($url): ${why:-see the log}; computing here (log: $log)"
  fi
fi
dvc repro "${pull[@]}" "$@"
fkstudy review HEAD --no-plots --max-rows 15
