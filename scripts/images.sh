#!/usr/bin/env bash
# Builds every image of the docker compose simulation (docker-compose.yml) with
# no registry access at all:
#
#   1. a Debian bookworm root file system made with debootstrap from the Debian
#      mirror, imported as the local base image dynoscope/base:bookworm (the
#      tarball is cached in .cache/images/, so reruns skip this);
#   2. dynoscope's binaries, built on this machine (`cargo build --release`,
#      honouring CARGO_TARGET_DIR);
#   3. the sample app's Python wheels, downloaded with pip on this machine
#      (cached) and installed offline in the image;
#   4. the images of docker/*/Dockerfile, built FROM the local base; Debian
#      packages (python3, postgresql, redis-server, prometheus) come from the
#      mirror at build time.
#
# With a registry none of this is needed: `docker compose build` builds the
# same Dockerfiles from debian:bookworm-slim and rust:1-bookworm.
#
# Options: --bin-dir DIR takes the binaries from DIR instead of building them
# (the compose test passes the ones the suite built). Environment:
# DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CACHE=.cache/images
BASE=dynoscope/base:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TARGET=${CARGO_TARGET_DIR:-target}
BIN_DIR=
if [ "${1:-}" = --bin-dir ]; then
  BIN_DIR=${2:?--bin-dir needs a directory}
fi
mkdir -p "$CACHE"

if ! docker info >/dev/null 2>&1; then
  echo "images.sh: no Docker engine answers (docker info failed): install and start Docker" >&2
  exit 1
fi

base_image() {
  docker image inspect "$BASE" >/dev/null 2>&1 && return 0
  local tarball="$CACHE/bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "images.sh: debootstrap needs root (once; the result is cached in $tarball)" >&2; exit 1; }
    ensure_apt debootstrap
    step "debootstrap: a Debian bookworm root file system from $MIRROR (once, ~2 min)"
    local root
    root=$(mktemp -d)
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
    # What the official debian images do for containers: no services started by
    # package scripts, no recommends, no apt caches left in layers.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod +x "$root/usr/sbin/policy-rc.d"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/90dynoscope"
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  step "docker import $tarball as $BASE"
  docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tarball" "$BASE" >/dev/null
}

binaries() {
  local from=$BIN_DIR
  if [ -z "$from" ]; then
    step "cargo build --release (dynoscope-sidecar, dynoscope-operator)"
    cargo build --release --quiet -p dynoscope-sidecar -p dynoscope-operator --bins
    from=$TARGET/release
  fi
  mkdir -p "$CACHE/bin"
  for bin in dynoscope-sidecar dynoscope-operator; do
    # Debug builds carry ~200 MB of debug info each; the image needs none.
    strip -o "$CACHE/bin/$bin" "$from/$bin" 2>/dev/null || cp "$from/$bin" "$CACHE/bin/$bin"
  done
}

wheels() {
  local req=examples/shop/requirements.txt
  if cmp -s "$req" "$CACHE/wheels/.requirements.txt"; then
    return 0
  fi
  step "pip download: the sample app's wheels for Debian bookworm's CPython 3.11"
  rm -rf "$CACHE/wheels"
  python3 -m pip download --quiet --disable-pip-version-check -d "$CACHE/wheels" -r "$req" \
    --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
    --platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any
  cp "$req" "$CACHE/wheels/.requirements.txt"
}

build() {
  local image=$1 dockerfile=$2 context=$3
  shift 3
  step "docker build $image"
  local log="$CACHE/build-${image//[\/:]/_}.log"
  docker build --build-arg BASE="$BASE" --build-arg BUILDER="$BASE" "$@" \
    -t "$image" -f "$dockerfile" "$context" >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; echo "images.sh: docker build $image failed (log: $log)" >&2; exit 1; }
}

base_image
binaries
wheels
build dynoscope/shop:dev docker/shop/Dockerfile . --build-arg PREBUILT=1
build dynoscope/postgres:dev docker/postgres/Dockerfile docker/postgres
build dynoscope/redis:dev docker/redis/Dockerfile docker/redis
build dynoscope/prometheus:dev docker/prometheus/Dockerfile docker/prometheus
# Binaries built on this host link against its glibc; bookworm has 2.36.
if ! docker run --rm --entrypoint dynoscope-sidecar dynoscope/shop:dev --version >/dev/null 2>&1; then
  echo "images.sh: dynoscope-sidecar does not run in dynoscope/shop:dev; built on a host with a newer glibc than Debian bookworm's?" \
    "Build the binaries in a container instead: docker compose build" >&2
  exit 1
fi
step "images: $(docker images --format '{{.Repository}}:{{.Tag}}' 'dynoscope/*' | sort | tr '\n' ' ')"
