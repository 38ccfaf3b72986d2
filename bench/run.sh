#!/usr/bin/env bash
# The speed benchmark in one command: installs what it needs (once), builds the release binary and
# runs bench/run.py, which prints the table (see BENCHMARKS.md). Arguments go to bench/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

stamp=.venv/.bench-requirements.sha256
wanted=$(sha256sum bench/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "bench: installing the Python peers (FastAPI, TorchServe) into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
  echo "$wanted" > "$stamp"
fi
if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null
fi
command -v java >/dev/null || echo "bench: no java on PATH: TorchServe will be skipped" >&2

cargo build --release --quiet
exec .venv/bin/python bench/run.py "$@"
