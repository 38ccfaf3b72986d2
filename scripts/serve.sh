#!/usr/bin/env bash
# Sets up what is missing, builds the release binary and starts the server on the bundled model
# (http://127.0.0.1:8000 unless --host/--port or FOOD_API_HOST/FOOD_API_PORT say otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
exec target/release/food-api "$@"
