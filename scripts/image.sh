#!/usr/bin/env bash
# Builds the server's image (default tag food-api:latest; IMAGE=... for another) from the release
# binary, the libraries it loads that the base lacks, and the model repository (models/).
# With --onnx, the ONNX-only image (default tag food-api:onnx): the binary built without libtorch
# (`--no-default-features`), ONNX Runtime as its only runtime library, and models-onnx/ (Lite0 and
# the text encoder as ONNX).
# BASE=debian:bookworm-slim where a registry is reachable; by default the local base that
# scripts/base-images.sh builds from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --onnx) flavour=onnx features=(--no-default-features) repository=models-onnx tag=onnx suffix=-onnx ;;
  "") flavour=torch features=() repository=models tag=latest suffix= ;;
  *) echo "usage: scripts/image.sh [--onnx]" >&2; exit 2 ;;
esac
IMAGE=${IMAGE:-food-api:$tag}
BASE=${BASE:-food-api-base:bookworm}
[ "$BASE" = food-api-base:bookworm ] && scripts/base-images.sh
[ -d $repository/food ] || { echo "image: no $repository/food: run scripts/setup.sh first" >&2; exit 1; }

cargo build --release --locked "${features[@]}"
stage=target/image-$flavour
rm -rf "$stage" && mkdir -p "$stage/lib" "$stage/models"
cp target/release/food-api "$stage/"
# target/release/food-api is the default build's (scripts, tests and the README run it): put it
# back. Both builds' artifacts stay in target/, so this only relinks when it was built before.
if [ $flavour = onnx ]; then cargo build --release --locked; fi
# What the binary links that is not Debian's own (libtorch_cpu, libc10, their libgomp, and the two
# small CUDA libraries libtorch_cpu itself links, libcudart and libcupti: 5 MB): ldd resolves them
# through the binary's rpath into .venv. libtorch_cuda is not linked (it is opened only on a
# machine with a GPU), so the wheel's large CUDA libraries stay out. The ONNX build links none.
ldd "$stage/food-api" | awk '$3 ~ /^\// {print $3}' | { grep -Ev '^/(usr/)?lib/' || true; } | while read -r lib; do
  cp -L "$lib" "$stage/lib/"
done
cp -L .venv/libonnxruntime.so "$stage/lib/libonnxruntime.so"
# Symbols are for debuggers, not for serving: libtorch_cpu's alone are 70 MB.
strip --strip-unneeded "$stage"/lib/*.so* "$stage/food-api"
# The versions only: no .staging-* leftovers, no state (that is data/, per replica).
for version in $repository/food/*/; do
  case "$(basename "$version")" in .*) continue ;; esac
  mkdir -p "$stage/models/food" && cp -a "$version" "$stage/models/food/"
done

# The image serves the version checkpoints/ holds (the README's Lite0), not the newest by name;
# the ONNX image its ONNX export.
lite0=$(python3 -c 'import json; print(json.load(open("checkpoints/manifest.json"))["version"])')
STABLE_VERSION=${STABLE_VERSION:-$lite0$suffix}
[ -d "$repository/food/$STABLE_VERSION" ] || { echo "image: $repository/food/$STABLE_VERSION is missing" >&2; exit 1; }

# Docker 28's BuildKit refuses a base that exists only locally (moby/moby#49542): the classic builder.
DOCKER_BUILDKIT=0 docker build -q --build-arg BASE="$BASE" --build-arg STABLE_VERSION="$STABLE_VERSION" -t "$IMAGE" -f Dockerfile "$stage" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "image: $IMAGE $((size / 1000000)) MB, serving $STABLE_VERSION (base $BASE; libraries $(du -sm "$stage/lib" | cut -f1) MB, models $(du -sm "$stage/models" | cut -f1) MB, binary $(du -sm "$stage/food-api" | cut -f1) MB)"
# The image holds it now; the staging copy is as large.
rm -rf "$stage"
