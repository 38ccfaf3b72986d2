#!/usr/bin/env bash
# Installs what is missing, and only that: the Python venv with libtorch (PyPI torch wheel) and the
# model export packages, the libtorch link cargo builds against, and the exported model files.
# Safe to run again; a second run takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
REQUIREMENTS=scripts/requirements.txt

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found; Python 3.10+ is needed" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the requirements changed since the last successful install.
stamp="$VENV/.requirements.sha256"
wanted=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing Python packages (torch 2.13.0 is about 2.7 GB of wheels; pip caches them)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$wanted" > "$stamp"
fi

# .cargo/config.toml points LIBTORCH at this link; build.rs bakes its lib/ into the rpath.
torch_dir=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
ln -sfn "$torch_dir" "$VENV/libtorch"
# build.rs bakes this link's path in: the "onnx" model format opens ONNX Runtime through it.
ort_lib=$("$VENV/bin/python" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[0])')
ln -sfn "$ort_lib" "$VENV/libonnxruntime.so"

# Swagger UI's assets for GET /docs, from the npm registry (build.rs embeds them in the binary).
SWAGGER_UI_VERSION=5.35.0
swagger_dir=.vendor/swagger-ui-dist-$SWAGGER_UI_VERSION
if [ ! -f "$swagger_dir/swagger-ui-bundle.js" ]; then
  command -v npm >/dev/null || { echo "setup: npm not found; it fetches swagger-ui-dist for /docs (Node.js 18+)" >&2; exit 1; }
  echo "setup: fetching swagger-ui-dist $SWAGGER_UI_VERSION (npm) for /docs"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null && tar -xzf "swagger-ui-dist-$SWAGGER_UI_VERSION.tgz")
  mkdir -p "$swagger_dir"
  cp "$tmp"/package/{swagger-ui-bundle.js,swagger-ui.css,favicon-32x32.png,LICENSE,NOTICE} "$swagger_dir/"
  rm -rf "$tmp"
fi
ln -sfn "swagger-ui-dist-$SWAGGER_UI_VERSION" .vendor/swagger-ui

# Export again whenever what the export is made from changed (scripts or pinned packages).
export_stamp=checkpoints/.export.sha256
export_inputs=$(cat scripts/export_model.py scripts/text_encoder.py "$REQUIREMENTS" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$export_stamp" 2>/dev/null)" != "$export_inputs" ] || [ ! -f checkpoints/manifest.json ] || [ ! -f class_mapping.json ]; then
  echo "setup: exporting the models into checkpoints/"
  "$VENV/bin/python" -W ignore scripts/export_model.py --out checkpoints --class-mapping class_mapping.json
  echo "$export_inputs" > "$export_stamp"
fi
