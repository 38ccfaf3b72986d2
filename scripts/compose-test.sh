#!/usr/bin/env bash
# The compose cluster (deploy/compose) for real: builds the images (scripts/base-images.sh, then
# scripts/image.sh), then tests/compose/check_compose.py brings it up under its own project name
# on a free loopback port, checks it through nginx (shared cache across replicas, a replica killed
# under load, Redis stopped and back, a rollout under load) and takes it down. Run by scripts/test.sh.
# Needs a Docker Engine and docker-compose: without them it fails, saying so, unless
# FOOD_API_SKIP_DOCKER_TESTS=1 says to skip it (and it says it skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1 || ! command -v docker-compose >/dev/null; then
  why="no Docker Engine answering 'docker info', or no docker-compose on the PATH"
  if [ "${FOOD_API_SKIP_DOCKER_TESTS:-0}" = 1 ]; then
    echo "compose-test: NOT RUN ($why; FOOD_API_SKIP_DOCKER_TESTS=1). Run scripts/compose-test.sh where Docker is." >&2
    exit 0
  fi
  echo "compose-test: $why. Install Docker Engine and docker-compose and run scripts/compose-test.sh, or set FOOD_API_SKIP_DOCKER_TESTS=1 to skip it knowingly" >&2
  exit 1
fi

scripts/image.sh
stable=$(python3 -c 'import json; print(json.load(open("checkpoints/manifest.json"))["version"])')
new=$(ls models/food | grep -v "^\." | grep -vx "$stable" | head -1)
echo "compose-test: the cluster serves $stable; the rollout brings $new"
.venv/bin/python tests/compose/check_compose.py deploy/compose/docker-compose.yml "$stable" "$new" sample/fruits.jpg
