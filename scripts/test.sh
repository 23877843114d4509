#!/usr/bin/env bash
# Runs every test of dynoscope on a fresh machine: installs what the tests
# need (Debian packages, a Python virtualenv), checks formatting and lints,
# builds the binaries the end-to-end tests start, and runs the suite.
# `--no-docker` (first argument) leaves out the docker compose test, which
# needs a Docker engine; other arguments go to the test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

docker=1
if [ "${1:-}" = --no-docker ]; then
  docker=0
  shift
fi

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "test prerequisites"
ensure_test_prerequisites

step "build the binaries the end-to-end tests start"
cargo build --workspace --bins --quiet

if [ "$docker" = 1 ]; then
  ensure_swap
fi

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  if [ "$docker" = 0 ]; then set -- -E 'not binary(compose)' "$@"; fi
  cargo nextest run --workspace --no-fail-fast "$@"
else
  if [ "$docker" = 0 ]; then set -- "$@" -- --skip compose_; fi
  cargo test --workspace --no-fail-fast "$@"
fi

if [ -x sidecar/fuzz/run.sh ]; then
  step "fuzz targets, briefly"
  sidecar/fuzz/run.sh "${DYNOSCOPE_FUZZ_SECONDS:-5}"
fi
