#!/usr/bin/env bash
# Re-exports the model into checkpoints/ and class_mapping.json from the registry packages (each file
# is written beside the old one and renamed into place), then asks a running server to reload.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -W ignore scripts/export_model.py --out checkpoints --class-mapping class_mapping.json
url="http://${FOOD_API_HOST:-127.0.0.1}:${FOOD_API_PORT:-8000}/reload_model"
# The admin token, if the server has one, goes in a header read from a pipe: never on a command line.
token=${FOOD_API_ADMIN_TOKEN:-}
if [ -z "$token" ] && [ -n "${FOOD_API_ADMIN_TOKEN_FILE:-}" ]; then token=$(head -n1 "$FOOD_API_ADMIN_TOKEN_FILE"); fi
headers=()
if [ -n "$token" ]; then headers=(-H @<(printf 'Authorization: Bearer %s\n' "$token")); fi
if ! curl -sS --fail-with-body -X POST "${headers[@]}" "$url"; then
  echo >&2
  echo "update_model: the files are updated, but $url did not reload them (is the server running?)" >&2
  exit 1
fi
echo
