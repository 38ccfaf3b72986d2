#!/usr/bin/env bash
# Sets up what is missing (the tests' Python clients and Chromium included), checks formatting and
# lints, then runs every test: unit tests, and integration tests against the real model over real
# HTTP (and the docs page in a real browser), then the compose cluster from the real images
# (scripts/compose-test.sh). This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "test: cargo fmt --check"
cargo fmt --check
echo "test: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
# The build without libtorch (the ONNX image's) has code of its own behind cfg: lint it too.
echo "test: cargo clippy --no-default-features --lib --bins -- -D warnings"
cargo clippy --no-default-features --lib --bins --quiet -- -D warnings
cargo test --no-fail-fast "$@"
# The container images and the compose cluster, for real (Docker Engine needed: without it this
# fails, saying so, unless FOOD_API_SKIP_DOCKER_TESTS=1). Not when only some tests were asked for.
if [ $# -eq 0 ]; then
  # In CI (.ci/run), the debug build is done with: its GBs go back before the release build.
  if [ "${FOOD_API_CI:-0}" = 1 ] && [ -d target/debug ]; then
    echo "test: CI: removing target/debug ($(du -sm target/debug | cut -f1) MB) before the release build; $(df -Pm . | awk 'NR==2 {print $4}') MB free"
    rm -rf target/debug
  fi
  scripts/compose-test.sh
fi
