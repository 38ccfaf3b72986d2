#!/usr/bin/env bash
# Installs what is missing, and only that: the Python venv with libtorch (PyPI torch wheel) and the
# model export packages, the libtorch link cargo builds against, and the exported model files.
# With --test (scripts/test.sh), also what the tests use: the Python test clients of
# scripts/requirements-test.txt and Debian's Chromium for the browser test.
# Safe to run again; a second run takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

for_tests=false
case "${1:-}" in
  --test) for_tests=true ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
VENV=.venv
REQUIREMENTS=scripts/requirements.txt

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found; Python 3.10+ is needed" >&2; exit 1; }

# torch's wheels and the CUDA wheels it pulls take about 8 GB once unpacked (and pip's cache the
# downloads): say so plainly rather than let pip fail half-way with "No space left on device".
if [ ! -f "$VENV/.$(basename "$REQUIREMENTS").sha256" ]; then
  free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
  if [ "${free_kb:-0}" -lt $((10 * 1024 * 1024)) ]; then
    echo "setup: only $((free_kb / 1024)) MB free here; the Python packages need about 10 GB (torch and its CUDA wheels). Free some space and run again" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# Installs a requirements file again only when it changed since its last successful install.
pip_install_once() {
  local file=$1 why=$2
  local stamp="$VENV/.$(basename "$file").sha256" wanted
  wanted=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "setup: installing $why"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$file"
    echo "$wanted" > "$stamp"
  fi
}
pip_install_once "$REQUIREMENTS" "Python packages (torch 2.13.0 is about 2.7 GB of wheels; pip caches them)"

# .cargo/config.toml points LIBTORCH at this link; build.rs bakes its lib/ into the rpath.
torch_dir=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
ln -sfn "$torch_dir" "$VENV/libtorch"
# build.rs bakes this link's path in: the "onnx" model format opens ONNX Runtime through it.
ort_lib=$("$VENV/bin/python" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[0])')
ln -sfn "$ort_lib" "$VENV/libonnxruntime.so"

# NASM for libjpeg-turbo's SIMD code (the turbojpeg crate builds it with cmake; without an
# assembler it builds plain C, which decoded a 512 px photo in 2.0-3.1 ms instead of 0.8-0.9 ms:
# every JPEG goes through it, to decode as PIL does). Debian's package, when it is missing.
if ! command -v nasm >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  if [ -z "$sudo" ] || command -v sudo >/dev/null; then
    echo "setup: installing nasm (Debian) for libjpeg-turbo's SIMD JPEG decoding"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq nasm >/dev/null
  else
    echo "setup: nasm is missing and this is not root: JPEG decoding is built without SIMD (about 2x slower); apt-get install nasm as root, then cargo clean -p turbojpeg-sys" >&2
  fi
fi

# Export again whenever what the export is made from changed (scripts or pinned packages).
export_stamp=checkpoints/.export.sha256
export_inputs=$(cat scripts/export_model.py scripts/text_encoder.py scripts/quantize.py scripts/reference.py "$REQUIREMENTS" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$export_stamp" 2>/dev/null)" != "$export_inputs" ] || [ ! -f checkpoints/manifest.json ] || [ ! -f class_mapping.json ] || [ ! -d models/food ] || [ ! -d models-onnx/food ] || [ ! -d models-bf16/food ] || [ ! -d models-int8/food ]; then
  echo "setup: exporting the models into checkpoints/, the versions into models/, the ONNX-only one into models-onnx/, the bf16 one into models-bf16/ and the int8 one into models-int8/"
  "$VENV/bin/python" -W ignore scripts/export_model.py --out checkpoints --class-mapping class_mapping.json --repository models --onnx-repository models-onnx --bf16-repository models-bf16 --int8-repository models-int8
  echo "$export_inputs" > "$export_stamp"
fi

if $for_tests; then
  pip_install_once scripts/requirements-test.txt "the Python packages the tests use"
  # Debian's packages the tests use when missing: Chromium for the browser test (playwright's own
  # browser download cannot work here), PostgreSQL's server for the history tests (they start
  # their own instances in temporary folders; the package's own cluster is not used), Redis for
  # the shared cache tests (the same: their own servers on free ports), debootstrap for the
  # container images' base (no registry to pull one from).
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian's ${missing[*]} for the tests"
    sudo=""
    if [ "$(id -u)" != 0 ]; then
      command -v sudo >/dev/null || { echo "setup: ${missing[*]} missing and this is not root: apt-get install ${missing[*]} as root" >&2; exit 1; }
      sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
