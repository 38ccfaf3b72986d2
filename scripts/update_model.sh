#!/usr/bin/env bash
# The seed app's update_model.sh, for your own model: fetches a weights file and its class mapping
# (local paths or http(s) URLs, downloaded here as the seed's script did), imports them into the
# drop-in folder with scripts/import_model.py (every check passes or nothing is written) and asks
# the running server to reload: the new version becomes `stable`, the one it replaces `previous`
# (POST /models/{name}/rollback goes back).
#
#   scripts/update_model.sh best_model.pth class_mapping.json
#   scripts/update_model.sh https://files.example/best_model.pth https://files.example/class_mapping.json \
#       --sha256 <hex of best_model.pth> [--classes-sha256 <hex>] [import_model.py options, e.g. --arch resnet50]
#
# The server is FOOD_API_HOST:FOOD_API_PORT (127.0.0.1:8000), its drop-in folder FOOD_API_MODEL_DIR
# (checkpoints) and mapping FOOD_API_CLASS_MAPPING (class_mapping.json), as the server reads them;
# the admin token, when it has one, FOOD_API_ADMIN_TOKEN or FOOD_API_ADMIN_TOKEN_FILE.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "update_model: $*" >&2; exit 1; }
[ $# -ge 2 ] || fail "usage: scripts/update_model.sh WEIGHTS CLASS_MAPPING [--sha256 HEX] [--classes-sha256 HEX] [import_model.py options] (paths or http(s) URLs)"
weights_src=$1 classes_src=$2
shift 2
weights_sha='' classes_sha='' import_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sha256) [ $# -ge 2 ] || fail "--sha256 needs a value"; weights_sha=$2; shift 2 ;;
    --classes-sha256) [ $# -ge 2 ] || fail "--classes-sha256 needs a value"; classes_sha=$2; shift 2 ;;
    *) import_args+=("$1"); shift ;;
  esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
MAX_MB=${FOOD_API_MAX_WEIGHTS_MB:-2048}

# A URL is downloaded (its file name kept: .safetensors and .onnx are told by it); a path is used
# as it is. Either way the pinned SHA-256, when given, must match before anything is imported.
fetch() {
  local src=$1 pin=$2 out
  case "$src" in
    http://*|https://*)
      out="$work/$(basename "${src%%\?*}")"
      curl -fsSL --max-filesize $((MAX_MB * 1024 * 1024)) -o "$out" "$src" 2>"$work/curl.err" \
        || fail "cannot download $src: $(tail -n1 "$work/curl.err")"
      ;;
    *) [ -f "$src" ] || fail "$src: no such file"; out=$src ;;
  esac
  if [ -n "$pin" ]; then
    local got
    got=$(sha256sum "$out" | cut -d' ' -f1)
    [ "$got" = "${pin,,}" ] || fail "$src has SHA-256 $got, not the pinned $pin: nothing imported"
  fi
  printf '%s' "$out"
}
weights=$(fetch "$weights_src" "$weights_sha")
classes=$(fetch "$classes_src" "$classes_sha")

[ -x .venv/bin/python ] || fail ".venv is missing: run scripts/setup.sh first (it installs torch, torchvision and timm)"
.venv/bin/python -W ignore scripts/import_model.py "$weights" --classes "$classes" --max-mb "$MAX_MB" \
  --drop-in "${FOOD_API_MODEL_DIR:-checkpoints}" --drop-in-mapping "${FOOD_API_CLASS_MAPPING:-class_mapping.json}" \
  "${import_args[@]}" || exit $?

url="http://${FOOD_API_HOST:-127.0.0.1}:${FOOD_API_PORT:-8000}/reload_model"
# The admin token, if the server has one, goes in a header read from a pipe: never on a command line.
token=${FOOD_API_ADMIN_TOKEN:-}
if [ -z "$token" ] && [ -n "${FOOD_API_ADMIN_TOKEN_FILE:-}" ]; then token=$(head -n1 "$FOOD_API_ADMIN_TOKEN_FILE"); fi
headers=()
if [ -n "$token" ]; then headers=(-H @<(printf 'Authorization: Bearer %s\n' "$token")); fi
if ! curl -sS --fail-with-body -X POST "${headers[@]}" "$url"; then
  echo >&2
  fail "the files are imported, but $url did not reload them (is the server running?)"
fi
echo
