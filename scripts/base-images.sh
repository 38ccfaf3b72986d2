#!/usr/bin/env bash
# Builds the local base images the Dockerfiles start from, from Debian's packages: there is no
# registry to pull `debian:bookworm-slim` from here. Users with a registry skip this and pass
# `--build-arg BASE=debian:bookworm-slim` (and use the public redis and nginx images).
#   food-api-base:bookworm   debootstrap's minbase (about 75 MB): the server's runtime image base
#   food-api-infra:bookworm  the same with redis-server and nginx-light: Redis and nginx for compose
# Safe to rerun: an image that exists is kept (FORCE=1 rebuilds).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
have() { [ "${FORCE:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

if have food-api-base:$SUITE && have food-api-infra:$SUITE; then
  echo "base-images: food-api-base:$SUITE and food-api-infra:$SUITE exist"
  exit 0
fi
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || { echo "base-images: debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "base-images: debootstrap needs root" >&2; exit 1; }

work=$(mktemp -d /var/tmp/food-api-rootfs.XXXXXX)
trap 'umount "$work/infra/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
echo "base-images: debootstrap $SUITE (minbase) from $MIRROR"
/usr/sbin/debootstrap --variant=minbase "$SUITE" "$work/base" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# Nothing of apt's caches or lists in the image: it is never updated in place, only rebuilt.
clean() { rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/*; }

cp -a "$work/base" "$work/infra"
mount -t proc proc "$work/infra/proc"
chroot "$work/infra" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$work/infra" apt-get install -y -qq --no-install-recommends redis-server nginx-light >/dev/null
umount "$work/infra/proc"

for image in base infra; do
  clean "$work/$image"
  tar -C "$work/$image" -c . | docker import -c 'CMD ["/bin/bash"]' - "food-api-$image:$SUITE" >/dev/null
  echo "base-images: food-api-$image:$SUITE $(docker image inspect -f '{{.Size}}' "food-api-$image:$SUITE" | awk '{printf "%.0f MB", $1/1e6}')"
done
