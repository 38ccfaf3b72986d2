#!/usr/bin/env bash
# Re-exports the model into checkpoints/ and class_mapping.json from the registry packages (each file
# is written beside the old one and renamed into place), then asks a running server to reload.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -W ignore scripts/export_model.py --out checkpoints --class-mapping class_mapping.json
url="http://${FOOD_API_HOST:-127.0.0.1}:${FOOD_API_PORT:-8000}/reload_model"
if ! curl -sS --fail-with-body -X POST "$url"; then
  echo >&2
  echo "update_model: the files are updated, but $url did not reload them (is the server running?)" >&2
  exit 1
fi
echo
