#!/usr/bin/env bash
# The images and the compose cluster (deploy/compose) for real: builds the images
# (scripts/base-images.sh, then scripts/image.sh and scripts/image.sh --onnx), checks that both
# images answer alike (tests/compose/check_images.py), then tests/compose/check_compose.py brings
# the cluster up under its own project name on a free loopback port, checks it through nginx (shared cache across replicas, a replica killed
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

free_mb=$(df -Pm . | awk 'NR==2 {print $4}')
echo "compose-test: ${free_mb} MB free for the release build, the base images and the server's image (about 3 GB)"
scripts/image.sh
# The ONNX-only image beside it: same answers from a binary without libtorch.
scripts/image.sh --onnx
.venv/bin/python tests/compose/check_images.py food-api:latest food-api:onnx sample
# The server's own thread count under a CPU quota smaller than the machine (docker --cpus 1: the
# cgroup's CFS quota; these machines run cgroup v1, and Rust's available_parallelism, which the
# server counts its cores by, reads v2's cpu.max the same way): one inference thread, a lone
# request's libtorch team of one, and no binding to cores it does not own.
quota=$(docker run -d --rm --cpus 1 -p 127.0.0.1::8000 food-api:latest)
trap 'docker stop "$quota" >/dev/null 2>&1 || true' EXIT
quota_port=$(docker port "$quota" 8000 | head -1 | sed 's/.*://')
for _ in $(seq 120); do curl -sf "127.0.0.1:$quota_port/health" >/dev/null && break; sleep 1; done
curl -sf "127.0.0.1:$quota_port/system_status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
m, cpus = s["model"], s["machine"]["cpus"]
seen = (m["inference_threads"], m["torch_threads_alone"], s["queue"]["threads_bound_to_cores"])
assert seen == (1, 1, 0), f"under --cpus 1 on {cpus} CPUs: inference threads, alone threads, bound = {seen}"
print(f"compose-test: under --cpus 1 on a {cpus}-CPU machine: 1 inference thread, 1 libtorch thread alone, none bound")
'
docker stop "$quota" >/dev/null
trap - EXIT
stable=$(python3 -c 'import json; print(json.load(open("checkpoints/manifest.json"))["version"])')
new=$(ls models/food | grep -v "^\." | grep -vx "$stable" | head -1)
echo "compose-test: the cluster serves $stable; the rollout brings $new"
.venv/bin/python tests/compose/check_compose.py deploy/compose/docker-compose.yml "$stable" "$new" sample/fruits.jpg

# The verbs as a user runs them, on a project of their own: preflight, deploy, status, destroy.
out=$(mktemp -d) port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
verbs=(--target compose --project food-api-verbs --out "$out")
trap 'target/release/food-api deploy destroy "${verbs[@]}" >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
target/release/food-api deploy preflight "${verbs[@]}"
FOOD_API_PUBLISH_PORT=$port target/release/food-api deploy deploy "${verbs[@]}"
ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/health/ready")
status=$(target/release/food-api deploy status "${verbs[@]}")
echo "$status"
[ "$ready" = 200 ] || { echo "compose-test: FAIL after 'deploy deploy', ready through nginx answered $ready" >&2; exit 1; }
[ "$(grep -c ' Up ' <<<"$status")" -ge 4 ] || { echo "compose-test: FAIL 'deploy status' does not show 4 services up" >&2; exit 1; }
# The replicas run hardened (read-only root, no capability, no new privileges, CPU and memory
# bounded) and healthy by the image's light check.
for service in api1 api2; do
  replica=$(docker ps -q --filter "label=com.docker.compose.project=food-api-verbs" --filter "label=com.docker.compose.service=$service")
  [ -n "$replica" ] || { echo "compose-test: FAIL no running $service" >&2; exit 1; }
  seen=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.State.Health.Status}}' "$replica")
  [ "$seen" = "true [ALL] [no-new-privileges:true] 2000000000 4294967296 healthy" ] ||
    { echo "compose-test: FAIL $service runs with $seen" >&2; exit 1; }
done
echo "compose-test: ok the replicas run read-only, with no capability, 2 CPUs and 4 GiB, healthy"
target/release/food-api deploy destroy "${verbs[@]}"
left=$(docker ps -a -q --filter "label=com.docker.compose.project=food-api-verbs")
[ -z "$left" ] || { echo "compose-test: FAIL 'deploy destroy' left containers: $left" >&2; exit 1; }
echo "compose-test: ok deploy preflight, deploy (ready through nginx), status, destroy"
