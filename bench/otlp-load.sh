#!/usr/bin/env bash
# The OTLP receiver's cost (tests/examples/otlp_load.rs): spans/s and data
# points/s one core decodes and converts, then the release sidecar's CPU and
# RSS while one client posts `rate` spans/s to /v1/traces and its Datadog
# sink delivers them to a local intake. Everything listens on 127.0.0.1 only.
#
# Usage: bench/otlp-load.sh [seconds=20] [rate=10000]
# (honours CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20} rate=${2:-10000}
target=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p dynoscope-sidecar --bins
cargo build --release -q -p dynoscope-tests --example otlp_load
"$target/release/examples/otlp_load" "$secs" "$rate"
