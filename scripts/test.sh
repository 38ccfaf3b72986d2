#!/usr/bin/env bash
# Sets up what is missing, then runs every test: unit tests, and integration tests against the
# real model over real HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --no-fail-fast "$@"
