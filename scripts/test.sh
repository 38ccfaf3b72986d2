#!/usr/bin/env bash
# Sets up what is missing (the tests' Python clients and Chromium included), checks formatting and
# lints, then runs every test: unit tests, and integration tests against the real model over real
# HTTP (and the docs page in a real browser), then the compose cluster from the real images
# (scripts/compose-test.sh). This is what CI runs (.ci/run). At the end, each stage's duration.
#
# One cargo profile for everything, release: the tests run the binary the images ship (compose-test
# copies target/release/food-api, already built), and the dependencies and build scripts (libtorch's
# C++ wrapper, libjpeg-turbo) are compiled once instead of once for debug and once for release.
# And one compilation: clippy is the compiler of this crate's own code (scripts/clippy-rustc), so
# the lints come with that build instead of a `cargo clippy` that compiled every dependency again
# in check mode (345 s of a 1823 s run). A plain `cargo build --release` afterwards recompiles this
# crate only (its fingerprint names the wrapper), never the dependencies. clippy-driver compiles
# this crate with rustc's MIR optimisations off (LLVM's still run: seen in --emit=mir), so the
# binary tested here is not byte-identical to a plain release build; speed is measured on a plain
# build (bench/).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS stages=() current=""
stage() {
  local name=$1 t0=$SECONDS
  shift
  current=$name
  echo "test: == $name"
  "$@"
  stages+=("$(printf '  %-46s %4d s' "$name" $((SECONDS - t0)))")
  current=""
}
summary() {
  local rc=$?
  echo "test: stages (seconds):"
  printf '%s\n' "${stages[@]}"
  [ -z "$current" ] || echo "  $current: stopped here (exit $rc)"
  printf '  %-46s %4d s\n' total $((SECONDS - started))
}
trap summary EXIT

whole=false
[ $# -eq 0 ] && whole=true
stage "set-up (scripts/setup.sh --test)" scripts/setup.sh --test

# The images' Debian base is made by debootstrap: network and disk, hardly any CPU, so it runs
# beside the build and the tests instead of after them. Its log is shown if it fails.
base_pid="" base_log=target/base-images.log
if $whole && [ "${FOOD_API_SKIP_DOCKER_TESTS:-0}" != 1 ] && docker info >/dev/null 2>&1; then
  mkdir -p target
  scripts/base-images.sh >"$base_log" 2>&1 &
  base_pid=$!
fi
base_images_made() { wait "$base_pid" || { cat "$base_log" >&2; return 1; }; cat "$base_log"; }

export RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/clippy-rustc"
stage "cargo fmt --check" cargo fmt --check
stage "build and clippy (release, all targets)" cargo test --release --no-run --all-targets --quiet
stage "cargo test --release: run" cargo test --release --no-fail-fast "$@"

# The container images and the compose cluster, for real (Docker Engine needed: without it this
# fails, saying so, unless FOOD_API_SKIP_DOCKER_TESTS=1). Not when only some tests were asked for.
if $whole; then
  if [ -n "$base_pid" ]; then
    stage "base images (made beside the above: the wait)" base_images_made
  fi
  stage "images and compose cluster (scripts/compose-test.sh)" scripts/compose-test.sh
fi
# The build without libtorch (the ONNX image's) has code of its own behind cfg: compose-test's ONNX
# image build lints it (same wrapper). When that run is skipped, it is built here (after the tests:
# it takes target/release/food-api's place until the default build is linked back). Not when only
# some tests were asked for.
if $whole && { [ "${FOOD_API_SKIP_DOCKER_TESTS:-0}" = 1 ] || ! docker info >/dev/null 2>&1; }; then
  lint_onnx() { cargo build --release --no-default-features --quiet && cargo build --release --quiet; }
  stage "build and clippy (--no-default-features)" lint_onnx
fi
