#!/usr/bin/env bash
# Sets up what is missing, builds the release binary and starts the server on the bundled model
# (http://127.0.0.1:8000 unless --host/--port or FOOD_API_HOST/FOOD_API_PORT say otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Not --quiet: a first release build takes minutes, and cargo's progress tells it from a hang.
echo "serve: building the release binary (the first build takes several minutes; later ones, seconds)"
cargo build --release
exec target/release/food-api "$@"
